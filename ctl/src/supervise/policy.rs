//! What the supervisor decides, without processes: the `--on-new-token` action and its signal,
//! whether a token calls for a restart or a signal, the reconnect backoff, the grace before
//! SIGKILL, and the exit code a shell would give.

use crate::exit::FAILURE;
use rustix::process::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// What `exec` does when a login brings a new token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNewToken {
    /// Nothing: kitectl replaces itself with CMD, which keeps the token it started with.
    None,
    /// Stop CMD (SIGTERM to its process group, SIGKILL after the grace period), start it again.
    Restart,
    /// Send this signal to CMD, which re-reads the token itself.
    Signal(Signal),
}

/// The signals `signal:NAME` accepts: those a program may catch to mean "reload".
pub(super) const SIGNAL_NAMES: [(&str, Signal); 9] = [
    ("HUP", Signal::HUP),
    ("INT", Signal::INT),
    ("QUIT", Signal::QUIT),
    ("USR1", Signal::USR1),
    ("USR2", Signal::USR2),
    ("TERM", Signal::TERM),
    ("ALRM", Signal::ALARM),
    ("WINCH", Signal::WINCH),
    ("CONT", Signal::CONT),
];

impl OnNewToken {
    /// Parses `none`, `restart` or `signal:NAME` (NAME with or without `SIG`, any case).
    pub fn parse(text: &str) -> Result<OnNewToken, String> {
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "none" => return Ok(OnNewToken::None),
            "restart" => return Ok(OnNewToken::Restart),
            _ => {}
        }
        let prefix = "signal:";
        let Some(name) = text
            .get(prefix.len()..)
            .filter(|_| lower.starts_with(prefix))
        else {
            return Err("use none, restart or signal:NAME (signal:HUP, signal:USR1, ...)".into());
        };
        signal_named(name).map(OnNewToken::Signal).ok_or_else(|| {
            let names: Vec<&str> = SIGNAL_NAMES.iter().map(|(n, _)| *n).collect();
            format!("unknown signal {name:?}: use one of {}", names.join(", "))
        })
    }
}

/// The signal called `name` (`hup`, `SIGUSR1`, ...), if `signal:NAME` accepts it.
pub(super) fn signal_named(name: &str) -> Option<Signal> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNAL_NAMES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, s)| *s)
}

/// `SIGHUP` for people, or the number when the name is not in the table.
pub(super) fn signal_label(signal: Signal) -> String {
    match SIGNAL_NAMES.iter().find(|(_, s)| *s == signal) {
        Some((name, _)) => format!("SIG{name}"),
        None => format!("signal {}", signal.as_raw()),
    }
}

/// What the supervisor does about the token kited serves now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Keep,
    Restart,
    Signal(Signal),
}

/// Given the token the child has and the one kited serves (`None`: no valid token, or kited
/// did not answer), what to do: only a different valid token moves the child.
pub fn decide(action: OnNewToken, child_token: &str, served: Option<&str>) -> Step {
    match (action, served) {
        (_, None) | (OnNewToken::None, _) => Step::Keep,
        (_, Some(served)) if served == child_token => Step::Keep,
        (OnNewToken::Restart, _) => Step::Restart,
        (OnNewToken::Signal(signal), _) => Step::Signal(signal),
    }
}

/// Whether a `watch` event may bring a token the child lacks. Only a login does: expiry,
/// invalidation and reminders leave the child running with what it has.
pub fn asks_for_token(event: &str) -> bool {
    event == "token_new"
}

/// The first wait before reconnecting to a kited that went away: short, so a restarted kited
/// is found almost at once.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between reconnects: a kited down for hours is still found within half a
/// minute of its return, at two connect attempts a minute meanwhile.
pub(super) const LAST_RETRY: Duration = Duration::from_secs(30);

/// The wait after one that failed: doubled, up to [`LAST_RETRY`].
pub fn next_retry(previous: Duration) -> Duration {
    (previous * 2).min(LAST_RETRY)
}

/// How long CMD has after SIGTERM to exit before a restart SIGKILLs it: time for a bot to
/// finish writing and close its connections.
pub(super) const RESTART_GRACE: Duration = Duration::from_secs(10);
/// For tests only: the grace in milliseconds, so the SIGKILL path can be tested quickly.
pub(super) const RESTART_GRACE_ENV: &str = "KITECTL_RESTART_GRACE_MS";

pub(super) fn restart_grace() -> Duration {
    std::env::var(RESTART_GRACE_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(RESTART_GRACE)
}

/// The shell's convention: the exit code, or 128 + the signal that killed the process.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(FAILURE),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(FAILURE),
        (None, None) => FAILURE,
    }
}
