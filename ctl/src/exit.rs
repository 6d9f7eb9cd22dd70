//! Exit codes, and the one stderr line each failure ends with.

use crate::client::ClientError;
use kite_proto::{ErrorKind, WireError};
use std::io::{self, Write};

pub use kite_proto::exit::{FAILURE, OK, USAGE};

/// Why a command stopped before finishing its job.
#[derive(Debug)]
pub enum Failure {
    /// Talking to the daemon failed, or the daemon answered with an error.
    Client(ClientError),
    /// Something local went wrong; the message is printed as is (exit 1).
    Local(String),
    /// The input was unusable; the message is printed as is (exit 2).
    Usage(String),
    /// stdout was closed under us (`kitectl status | head -1`): stop without a word.
    StdoutClosed,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::Client(e)
    }
}

/// What the person is told and which code the process ends with.
/// `flags` are the global flags the person used (see `Target::hint_flags`), repeated in every
/// kitectl command a message suggests.
pub fn describe(failure: &Failure, flags: &str) -> (Option<String>, u8) {
    match failure {
        Failure::Client(ClientError::Daemon(e)) => {
            (Some(daemon_message(e, flags)), e.kind.exit_code())
        }
        Failure::Client(e) => (Some(e.to_string()), e.exit_code()),
        Failure::Local(message) => (Some(message.clone()), FAILURE),
        Failure::Usage(message) => (Some(message.clone()), USAGE),
        Failure::StdoutClosed => (None, OK),
    }
}

/// The actionable line for an error the daemon answered with. kited's own sentence is kept as
/// it is (said once, not wrapped in another), with the commands it suggests made to reach the
/// same daemon (`flags`: ` --profile NAME` or ` --socket PATH`, or nothing).
pub fn daemon_message(e: &WireError, flags: &str) -> String {
    let profile_flag = flags;
    let for_profile = |text: &str| text.replace("`kitectl ", &format!("`kitectl{flags} "));
    match e.kind {
        ErrorKind::LoginRequired if e.message.contains("log in with") => for_profile(&e.message),
        ErrorKind::LoginRequired => {
            let reason = if e.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.message)
            };
            format!("no valid Kite token{reason}: log in with `kitectl{profile_flag} login --open`")
        }
        ErrorKind::NotConfigured if e.message.contains("kitectl setup") => for_profile(&e.message),
        ErrorKind::NotConfigured => {
            let reason = if e.message.is_empty() {
                "kited has no Kite app configured".to_string()
            } else {
                e.message.clone()
            };
            format!(
                "{reason}; run `kitectl{profile_flag} setup` to configure it, then restart kited"
            )
        }
        _ if e.message.is_empty() => format!("kited answered {:?} with no message", e.kind),
        _ => e.message.clone(),
    }
}

/// What a command returns: done, or the failure to report.
pub type Outcome = Result<(), Failure>;

/// Ends a command: 0, or the failure said in one line (with `hint_flags` repeated in every
/// command it suggests) and its exit code.
pub fn finish(outcome: Outcome, hint_flags: &str) -> u8 {
    match outcome {
        Ok(()) => OK,
        Err(failure) => report(&failure, hint_flags),
    }
}

/// Prints `kitectl: MESSAGE` as exactly one line on stderr and returns the exit code.
pub fn report(failure: &Failure, flags: &str) -> u8 {
    let (message, code) = describe(failure, flags);
    if let Some(message) = message {
        let line = format!("kitectl: {}\n", one_line(&message));
        let _ = io::stderr().write_all(line.as_bytes());
    }
    code
}

/// Folds control characters (newlines included) into spaces so a message stays one line.
pub fn one_line(message: &str) -> String {
    let folded: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    folded.trim().to_string()
}

/// Writes `bytes` to stdout and flushes; a closed pipe becomes [`Failure::StdoutClosed`].
pub fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(Failure::StdoutClosed),
        Err(e) => Err(Failure::Local(format!("cannot write to stdout: {e}"))),
    }
}

/// Writes an informational line to stderr (ignoring failure: it is only advice).
pub fn note(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = io::stderr().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_proto::exit::LOGIN_REQUIRED;

    #[test]
    fn every_kind_ends_with_the_code_of_the_shared_table() {
        for kind in ErrorKind::ALL {
            let failure = Failure::Client(ClientError::Daemon(WireError::new(kind, "m")));
            let expected = if kind == ErrorKind::LoginRequired {
                LOGIN_REQUIRED
            } else {
                FAILURE
            };
            assert_eq!(describe(&failure, "").1, expected, "{kind:?}");
        }
    }

    #[test]
    fn login_required_tells_how_to_log_in() {
        let e = WireError::new(ErrorKind::LoginRequired, "token expired at 06:00");
        let failure = Failure::Client(ClientError::Daemon(e.clone()));
        let (message, code) = describe(&failure, "");
        assert_eq!(code, 4);
        assert_eq!(
            message.unwrap(),
            "no valid Kite token (token expired at 06:00): log in with `kitectl login --open`"
        );
        assert!(
            daemon_message(&e, " --profile prod").contains("`kitectl --profile prod login --open`")
        );
        // kited's own sentence is said once, with the profile's command.
        let full = WireError::new(
            ErrorKind::LoginRequired,
            "no valid Kite token (token is none): log in with `kitectl login --open`",
        );
        assert_eq!(
            daemon_message(&full, " --profile prod"),
            "no valid Kite token (token is none): log in with `kitectl --profile prod login --open`"
        );
    }

    #[test]
    fn not_configured_names_the_settings() {
        let e = WireError::new(ErrorKind::NotConfigured, "no api key");
        let message = daemon_message(&e, "");
        assert!(message.starts_with("no api key;"), "{message}");
        assert!(message.contains("`kitectl setup`"), "{message}");
        assert_eq!(message.matches("configure").count(), 1, "{message}");
        let (_, code) = describe(&Failure::Client(ClientError::Daemon(e)), "");
        assert_eq!(code, 1);
    }

    #[test]
    fn other_kinds_pass_the_message_through() {
        let e = WireError::new(ErrorKind::Kite, "Token is invalid or has expired.");
        assert_eq!(daemon_message(&e, ""), "Token is invalid or has expired.");
    }

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(one_line(" a\nb\r\tc \n"), "a b  c");
    }

    #[test]
    fn closed_stdout_is_quiet_success() {
        assert_eq!(describe(&Failure::StdoutClosed, ""), (None, OK));
        assert_eq!(describe(&Failure::Local("x".into()), "").1, FAILURE);
    }
}
