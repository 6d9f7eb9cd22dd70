//! One function per command: talk to kited, print the result, return the exit code.

use crate::cli::{Cli, Command, Target};
use crate::client::{Client, ClientError, TIMEOUT};
use crate::exit::{self, finish, note, print, Failure, Outcome};
use crate::login::{login, login_link, revoke_links};
use crate::status_text::{render_status, user_label};
use clap::CommandFactory;
use kite_proto::message::{
    Doctor, DoctorReport, Exchange, Logout, Ping, PushResults, PushTest, Shutdown, Watch,
};
use kite_proto::Event;
use serde_json::Value;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::Duration;

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    let Cli { target, command } = cli;
    let outcome = match command {
        Command::GetToken { wait, json } => return get_token(&target, wait, json),
        Command::Status { json } => status(&target, json),
        Command::Login {
            revoke_links: true, ..
        } => revoke_links(&target),
        Command::Login {
            link: true,
            qr,
            wait,
            ..
        } => login_link(&target, qr, wait),
        Command::Login { open, wait, .. } => login(&target, open, wait),
        Command::Exchange { value } => exchange(&target, value.as_deref()),
        Command::Logout => logout(&target),
        Command::PushTest => push_test(&target),
        Command::Doctor { json } => doctor(&target, json),
        Command::Env { wait } => env(&target, wait),
        Command::Exec {
            wait,
            on_new_token: crate::supervise::OnNewToken::None,
            command,
        } => exec(&target, wait, &command),
        Command::Exec {
            wait,
            on_new_token,
            command,
        } => return crate::supervise::run(&target, on_new_token, wait, &command),
        Command::Watch { json } => watch(&target, json),
        Command::Ping => ping(&target),
        Command::Shutdown => shutdown(&target),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::aot::generate(shell, &mut Cli::command(), "kitectl", &mut script);
            print(&script)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Setup(args) => crate::setup::run(&target, &args),
    };
    finish(outcome, &target.hint_flags())
}

fn connect(target: &Target) -> Result<Client, ClientError> {
    Client::connect(&target.socket_path())
}

/// `get-token`: the token alone on stdout (the hot path: one connect, one line each way).
pub fn get_token(target: &Target, wait: Option<u64>, json: bool) -> u8 {
    let outcome = (|| {
        let mut client = connect(target)?;
        let token = client.fetch_token(wait)?;
        drop(client);
        let line = if json {
            json_line(&token)
        } else {
            format!("{}\n", token.access_token)
        };
        print(line.as_bytes())
    })();
    finish(outcome, &target.hint_flags())
}

/// `status`: human lines, or the status object itself with `--json`. Exit 0 whatever the state.
fn status(target: &Target, json: bool) -> Outcome {
    let mut client = connect(target)?;
    let status = client.fetch_status()?;
    if json {
        return print(json_line(&status).as_bytes());
    }
    print(render_status(&status).as_bytes())
}

/// `value` as one line of JSON.
fn json_line(value: &impl serde::Serialize) -> String {
    let mut line = serde_json::to_string(value).expect("kite-proto's answers always serialize");
    line.push('\n');
    line
}

/// What `exchange` sends for the argument: a URL (or query string) is a callback, anything else
/// a bare request token.
pub fn exchange_request(value: &str) -> Exchange {
    let value = value.trim();
    if value.contains("://") || value.contains("request_token=") {
        Exchange {
            request_token: None,
            callback_url: Some(value.to_string()),
        }
    } else {
        Exchange {
            request_token: Some(value.to_string()),
            callback_url: None,
        }
    }
}

/// `exchange`: trade the callback URL (or a request token) for an access token. Without an
/// argument (or with `-`) it is read from stdin.
fn exchange(target: &Target, value: Option<&str>) -> Outcome {
    let from_argv = value.filter(|v| *v != "-");
    let pasted;
    let value = match from_argv {
        Some(value) => value,
        None => {
            pasted = crate::paste::read_pasted()?;
            &pasted
        }
    };
    let mut client = connect(target)?;
    // The daemon calls Kite before answering; allow for its own timeout.
    client.set_read_timeout(Some(TIMEOUT * 4))?;
    let status = client.call(exchange_request(value))?.status;
    let who = user_label(&status).unwrap_or_else(|| "an unknown user".into());
    let until = status.expires_at.as_deref().unwrap_or("an unknown time");
    let line = if status.valid {
        format!("Logged in as {who}; token valid until {until}\n")
    } else {
        format!(
            "Logged in as {who}; but the token is already {} (cutoff {until})\n",
            status.state
        )
    };
    print(line.as_bytes())?;
    if from_argv.is_some() {
        note(crate::paste::ARGV_WARNING);
    }
    Ok(())
}

/// How long `push-test` waits: the daemon gives each channel one try of up to 10 s, all at once.
const PUSH_TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `push-test`: one line per channel; exit 1 unless every channel delivered.
fn push_test(target: &Target) -> Outcome {
    let mut client = connect(target)?;
    client.set_read_timeout(Some(PUSH_TEST_TIMEOUT))?;
    let PushResults { results } = client.call(PushTest {})?;
    let mut out = String::new();
    for result in &results {
        match &result.error {
            None => out.push_str(&format!("{}: ok\n", result.channel)),
            Some(error) => out.push_str(&format!(
                "{}: failed: {}\n",
                result.channel,
                exit::one_line(error)
            )),
        }
    }
    print(out.as_bytes())?;
    match results.iter().filter(|r| !r.ok).count() {
        0 => Ok(()),
        n => Err(Failure::Local(format!(
            "{n} of {} push channels failed",
            results.len()
        ))),
    }
}

/// How long `doctor` waits: the daemon's checks run at once, each bounded by `kite.timeout`
/// (7 s by default); this leaves room for a generously raised timeout.
const DOCTOR_TIMEOUT: Duration = Duration::from_secs(120);

/// `doctor`: one line per check (or `{"checks":[...]}`); exit 1 unless every check passed.
fn doctor(target: &Target, json: bool) -> Outcome {
    let mut client = connect(target)?;
    client.set_read_timeout(Some(DOCTOR_TIMEOUT))?;
    let DoctorReport { checks } = client.call(Doctor {})?;
    let out = if json {
        let mut line = serde_json::to_string(&serde_json::json!({ "checks": checks }))
            .expect("checks are plain strings and booleans");
        line.push('\n');
        line
    } else {
        checks
            .iter()
            .map(|c| format!("{}\n", exit::one_line(&c.line())))
            .collect()
    };
    print(out.as_bytes())?;
    match checks.iter().filter(|c| !c.ok).count() {
        0 => Ok(()),
        n => Err(Failure::Local(format!(
            "{n} of {} readiness checks failed",
            checks.len()
        ))),
    }
}

fn logout(target: &Target) -> Outcome {
    let mut client = connect(target)?;
    client.set_read_timeout(Some(TIMEOUT * 4))?;
    client.call(Logout {})?;
    print(b"Logged out\n")
}

/// Single-quotes `text` for POSIX shells: `'…'`, with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}

/// `env`: export lines for a shell's `eval`.
fn env(target: &Target, wait: Option<u64>) -> Outcome {
    let mut client = connect(target)?;
    let token = client.fetch_token(wait)?;
    let text = format!(
        "export KITE_API_KEY={}\nexport KITE_ACCESS_TOKEN={}\n",
        shell_quote(&token.api_key),
        shell_quote(&token.access_token)
    );
    print(text.as_bytes())
}

/// `exec`: replace kitectl with CMD, the token in its environment.
fn exec(target: &Target, wait: Option<u64>, command: &[OsString]) -> Outcome {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::Local("exec needs a command to run".into()));
    };
    let mut client = connect(target)?;
    let token = client.fetch_token(wait)?;
    drop(client);
    let err = std::process::Command::new(program)
        .args(args)
        .env("KITE_API_KEY", &token.api_key)
        .env("KITE_ACCESS_TOKEN", &token.access_token)
        .exec();
    Err(Failure::Local(format!(
        "cannot run {}: {err}",
        program.to_string_lossy()
    )))
}

/// `watch`: one line per event until the daemon hangs up.
fn watch(target: &Target, json: bool) -> Outcome {
    let mut client = connect(target)?;
    client.call(Watch {})?;
    client.set_read_timeout(None)?;
    if json {
        // The daemon's own first line: tells a script it is subscribed.
        print(b"{\"ok\":true}\n")?;
    }
    while let Some(line) = client.read_line()? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut text = if json {
            String::from_utf8_lossy(&line).into_owned()
        } else {
            match serde_json::from_slice::<Value>(&line) {
                Ok(value) => event_line(&value),
                Err(_) => continue,
            }
        };
        text.push('\n');
        print(text.as_bytes())?;
    }
    Ok(())
}

/// The human line for an event: "HH:MM:SS name: what happened" (the sentence kited logs too).
pub fn event_line(value: &Value) -> String {
    let at = value.get("at").and_then(Value::as_str).unwrap_or("");
    // RFC 3339: "2026-11-24T05:45:00+05:30" → "05:45:00", in the offset the daemon gave.
    let clock = at.get(11..19).unwrap_or(at);
    let name = value
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("unknown_event");
    match serde_json::from_value::<Event>(value.clone()) {
        Ok(event) => format!("{clock} {name}: {}", exit::one_line(&event.sentence())),
        Err(_) => format!("{clock} {name}"),
    }
}

/// `ping`.
fn ping(target: &Target) -> Outcome {
    let mut client = connect(target)?;
    let version = client.call(Ping {})?.version;
    print(format!("kited {version}\n").as_bytes())
}

/// `shutdown`.
fn shutdown(target: &Target) -> Outcome {
    let mut client = connect(target)?;
    client.call(Shutdown {})?;
    print(b"kited is shutting down\n")
}

/// `man`: the roff page, or every page into `dir`.
fn man(dir: Option<&std::path::Path>) -> Outcome {
    let failed = |e: std::io::Error| Failure::Local(format!("cannot write the man pages: {e}"));
    if let Some(dir) = dir {
        return clap_mangen::generate_to(Cli::command(), dir).map_err(failed);
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(failed)?;
    print(&page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::answer_timeout;
    use crate::client::tests::{fake_daemon, temp_dir};
    use crate::status_text::tests::sample_status;
    use serde_json::json;

    #[test]
    fn exchange_argument_classification() {
        let url = "http://127.0.0.1:8079/auth/callback?request_token=abc&status=success";
        assert_eq!(
            exchange_request(url),
            Exchange {
                request_token: None,
                callback_url: Some(url.into())
            }
        );
        assert_eq!(
            exchange_request("  request_token=abc&action=login "),
            Exchange {
                request_token: None,
                callback_url: Some("request_token=abc&action=login".into())
            }
        );
        assert_eq!(
            exchange_request(" AbC123xyz\n"),
            Exchange {
                request_token: Some("AbC123xyz".into()),
                callback_url: None
            }
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc"), "'abc'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$x `y` \"z\""), "'$x `y` \"z\"'");
    }

    #[test]
    fn shell_quoting_survives_a_real_shell() {
        let nasty = "a'b\"c$d`e\\f g'";
        let script = format!("printf %s {}", shell_quote(nasty));
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }

    #[test]
    fn answer_timeout_exceeds_the_wait() {
        assert_eq!(answer_timeout(None), Duration::from_secs(5));
        assert_eq!(answer_timeout(Some(0)), Duration::from_secs(5));
        assert_eq!(answer_timeout(Some(60)), Duration::from_secs(65));
        assert_eq!(
            answer_timeout(Some(u64::MAX)),
            Duration::from_secs(u64::MAX)
        );
    }

    #[test]
    fn event_lines() {
        let line = event_line(&json!({
            "event": "token_expiring", "minutes_left": 15,
            "expires_at": "2026-11-24T06:00:00+05:30", "at": "2026-11-24T05:45:00+05:30"
        }));
        assert_eq!(
            line,
            "05:45:00 token_expiring: Kite token expires in 15 minutes"
        );
        let line = event_line(&json!({
            "event": "token_new", "user_id": "AB1234", "user_name": "Ada",
            "expires_at": "2026-11-24T06:00:00+05:30", "at": "2026-11-23T09:00:01+05:30"
        }));
        assert_eq!(
            line,
            "09:00:01 token_new: Logged in as Ada until 06:00 tomorrow"
        );
        let line = event_line(&json!({
            "event": "order_update", "at": "2026-11-23T09:15:00+05:30",
            "order": {"order_id": "151220000000000", "status": "COMPLETE",
                      "transaction_type": "BUY", "quantity": 1, "tradingsymbol": "SBIN"}
        }));
        assert_eq!(
            line,
            "09:15:00 order_update: Order 151220000000000 COMPLETE BUY 1 SBIN"
        );
        let line = event_line(&json!({"event": "from_the_future", "at": "2026-11-23T10:00:00Z"}));
        assert_eq!(line, "10:00:00 from_the_future");
    }

    const TOKEN: &str = "{\"ok\":true,\"access_token\":\"tok123\",\"api_key\":\"key9\",\"expires_at\":\"2026-11-24T06:00:00+05:30\"}\n";

    fn target(path: std::path::PathBuf) -> Target {
        Target {
            profile: "default".into(),
            socket: Some(path),
        }
    }

    #[test]
    fn get_token_against_a_fake_daemon() {
        let dir = temp_dir("get-token");
        let (path, daemon) = fake_daemon(&dir, vec![Some(TOKEN.into())]);
        assert_eq!(get_token(&target(path), Some(30), false), exit::OK);
        assert_eq!(
            daemon.join().unwrap(),
            vec![r#"{"op":"get_token","wait_secs":30}"#]
        );
    }

    #[test]
    fn get_token_exit_codes() {
        let dir = temp_dir("get-token-codes");
        let cases = [
            ("login_required", kite_proto::exit::LOGIN_REQUIRED),
            ("not_configured", exit::FAILURE),
            ("internal", exit::FAILURE),
        ];
        for (kind, code) in cases {
            let _ = std::fs::remove_file(dir.join("kited.sock"));
            let answer =
                format!("{{\"ok\":false,\"error\":{{\"kind\":\"{kind}\",\"message\":\"m\"}}}}\n");
            let (path, daemon) = fake_daemon(&dir, vec![Some(answer)]);
            assert_eq!(get_token(&target(path), None, false), code, "{kind}");
            daemon.join().unwrap();
        }
        assert_eq!(
            get_token(&target(dir.join("absent.sock")), None, false),
            kite_proto::exit::UNREACHABLE
        );
    }

    #[test]
    fn status_and_env_against_a_fake_daemon() {
        let dir = temp_dir("status");
        let status = json!({"ok": true, "status": serde_json::to_value(sample_status()).unwrap()});
        let (path, daemon) = fake_daemon(&dir, vec![Some(format!("{status}\n"))]);
        assert!(status_is_ok(&target(path.clone()), true));
        daemon.join().unwrap();

        std::fs::remove_file(&path).unwrap();
        let (path, daemon) = fake_daemon(&dir, vec![Some(TOKEN.into())]);
        assert!(env(&target(path), None).is_ok());
        daemon.join().unwrap();
    }

    fn status_is_ok(target: &Target, json: bool) -> bool {
        status(target, json).is_ok()
    }
}
