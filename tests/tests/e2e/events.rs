//! Events and everything that produces or consumes them, end to end against the real `kited` and
//! `kitectl`: `watch`, the expiry schedule (driven with `KITED_FAKE_NOW`, never real minutes),
//! the periodic token check, the pre-market reminder, `notify.command`, `hooks.env_file`, the
//! account guard, renewal, postbacks, desktop notifications on a real private D-Bus bus, and
//! `get-token --wait`.
//!
//! The D-Bus tests start their own `dbus-daemon` and a small notification server
//! (`tests/dbus/notification_server.py`, needing Debian's python3-dbus and python3-gi).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kite_proto::checksum::{postback_checksum, refresh_checksum};
use kite_proto::TokenState;
use kite_tests::harness::{eventually, Daemon};
use kite_tests::sim::Fault;
use serde_json::{json, Value};

use crate::helper::{first_line, get_token, login_headless, rfc3339, sim, status, toml_string};

/// How long anything that should happen promptly may take.
const WAIT: Duration = Duration::from_secs(10);
/// `login_time` for fake-clock tests: the token expires at [`CUTOFF`].
const LOGIN_TIME: &str = "2026-11-23 09:00:00";
const CUTOFF: &str = "2026-11-24T06:00:00+05:30";

/// `CUTOFF` minus `secs`, as `KITED_FAKE_NOW`.
fn before_cutoff(secs: i64) -> String {
    (rfc3339(CUTOFF) - chrono::Duration::seconds(secs)).to_rfc3339()
}

fn logout(daemon: &Daemon) {
    let answer = daemon.request(&json!({"op": "logout"}));
    assert_eq!(answer["ok"], true, "logout failed: {answer}");
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) -> PathBuf {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// A private directory for files a test's scripts write.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kited-events-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// watch subscriptions

/// A `watch` subscription whose lines arrive on a channel from a reader thread: a raw socket
/// client or a `kitectl watch --json` child. Ends (hangs up, kills the child) when dropped.
struct Watch {
    lines: mpsc::Receiver<String>,
    what: String,
    child: Option<Child>,
    stream: Option<UnixStream>,
    /// Events already read past while looking for another one.
    seen: Vec<Value>,
}

impl Watch {
    /// `{"op":"watch"}` on a fresh socket connection; returns once `{"ok":true}` arrived.
    fn socket(daemon: &Daemon) -> Watch {
        let stream = daemon.connect_ipc();
        stream.set_read_timeout(None).unwrap();
        (&stream).write_all(b"{\"op\":\"watch\"}\n").unwrap();
        let reader = stream.try_clone().unwrap();
        let watch = Watch::from_reader(reader, "socket watch", None, Some(stream));
        watch.subscribed()
    }

    /// `kitectl watch --json`; returns once it printed `{"ok":true}`.
    fn kitectl(daemon: &Daemon) -> Watch {
        let mut child = daemon
            .ctl_command(&["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start kitectl watch");
        let stdout = child.stdout.take().unwrap();
        let watch = Watch::from_reader(stdout, "kitectl watch --json", Some(child), None);
        watch.subscribed()
    }

    fn from_reader(
        reader: impl Read + Send + 'static,
        what: &str,
        child: Option<Child>,
        stream: Option<UnixStream>,
    ) -> Watch {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            lines,
            what: what.into(),
            child,
            stream,
            seen: Vec::new(),
        }
    }

    fn subscribed(self) -> Watch {
        let first = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("{}: no first line: {e}", self.what));
        let first: Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("{}: first line {first:?} is not JSON: {e}", self.what));
        assert_eq!(first, json!({"ok": true}), "{}: first line", self.what);
        self
    }

    /// The next event line, checked for shape: an object with `event` and an RFC 3339 `at`.
    fn next(&mut self, deadline: Instant) -> Option<(String, Value)> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", self.what));
        assert!(
            event["event"].is_string(),
            "{}: no event name: {line}",
            self.what
        );
        rfc3339(
            event["at"]
                .as_str()
                .unwrap_or_else(|| panic!("no at: {line}")),
        );
        Some((line, event))
    }

    /// Reads events until one named `name` (within `timeout`); returns it. Others are kept in
    /// `seen`.
    fn expect_within(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline) {
                Some((_, event)) if event["event"] == name => return event,
                Some((_, event)) => self.seen.push(event),
                None => panic!(
                    "{}: no {name} event within {timeout:?}; saw {:?}",
                    self.what, self.seen
                ),
            }
        }
    }

    fn expect(&mut self, name: &str) -> Value {
        self.expect_within(name, WAIT)
    }

    /// The next event, whatever it is, as its raw line and value.
    fn next_line(&mut self) -> (String, Value) {
        self.next(Instant::now() + WAIT)
            .unwrap_or_else(|| panic!("{}: no event within {WAIT:?}", self.what))
    }

    /// Asserts that no event named `name` arrives within `within` (others are kept in `seen`).
    /// Only for things that must NOT happen, where no later event can prove it.
    fn assert_none_within(&mut self, name: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while let Some((line, event)) = self.next(deadline) {
            assert_ne!(event["event"], name, "{}: unexpected {line}", self.what);
            self.seen.push(event);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. watch

#[test]
fn watch_streams_token_new_and_invalidated_without_the_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let mut ctl = Watch::kitectl(&daemon);
    let mut raw = Watch::socket(&daemon);

    let token = login_headless(&daemon);
    for watch in [&mut ctl, &mut raw] {
        let (line, event) = watch.next_line();
        assert_eq!(event["event"], "token_new", "{line}");
        assert_eq!(event["user_id"], "AB1234", "{line}");
        assert_eq!(event["user_name"], "Kite Tester", "{line}");
        rfc3339(event["expires_at"].as_str().unwrap());
        assert!(!line.contains(&token), "the access token is in {line}");
        assert!(
            !line.contains(&sim.api_secret()),
            "the api secret is in {line}"
        );
    }

    logout(&daemon);
    for watch in [&mut ctl, &mut raw] {
        let (line, event) = watch.next_line();
        assert_eq!(event["event"], "token_invalidated", "{line}");
        assert!(
            event["reason"]
                .as_str()
                .is_some_and(|r| r.contains("logged out")),
            "{line}"
        );
        assert!(!line.contains(&token), "the access token is in {line}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. warnings and expiry on a fake clock

#[test]
fn expiry_warning_then_expiry_on_a_fake_clock() {
    let sim = sim();
    sim.set_login_time(Some(LOGIN_TIME.into()));
    let files = scratch();
    let env_file = files.path().join("kite.env");
    let config = format!(
        "[expiry]\nwarn_before = [\"15m\", \"1m\"]\n[hooks]\nenv_file = {}\n",
        toml_string(&env_file.display().to_string())
    );

    // Run 1: three seconds before the 15-minute warning.
    let mut first = Daemon::builder(&sim)
        .config_toml(&config)
        .env("KITED_FAKE_NOW", &before_cutoff(15 * 60 + 3))
        .start();
    let mut watch = Watch::socket(&first);
    let token = login_headless(&first);
    assert_eq!(status(&first).expires_at.as_deref(), Some(CUTOFF));
    watch.expect("token_new");
    let warning = watch.expect("token_expiring");
    assert_eq!(warning["minutes_left"], 15, "{warning}");
    assert_eq!(warning["expires_at"], CUTOFF, "{warning}");
    assert!(
        rfc3339(warning["at"].as_str().unwrap()) >= rfc3339(CUTOFF) - chrono::Duration::minutes(15)
    );
    assert_eq!(status(&first).state, TokenState::Expiring);
    drop(watch);
    first.terminate();

    // Run 2, on the same state: a few seconds before the cutoff.
    let second = Daemon::builder(&sim)
        .config_toml(&config)
        .state_dir(first.state_dir())
        .env("KITED_FAKE_NOW", &before_cutoff(4))
        .start();
    let mut watch = Watch::socket(&second);
    assert_eq!(
        get_token(&second),
        token,
        "the stored token is served until the cutoff"
    );
    let expired = watch.expect("token_expired");
    assert_eq!(expired["expires_at"], CUTOFF, "{expired}");
    assert!(rfc3339(expired["at"].as_str().unwrap()) >= rfc3339(CUTOFF));
    assert_eq!(status(&second).state, TokenState::Expired);
    assert!(status(&second).needs_refresh);
    let out = second.ctl(&["get-token"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "get-token after the cutoff: {out:?}"
    );
    assert!(out.stdout.is_empty(), "get-token printed {:?}", out.stdout);
    eventually(WAIT, "the env file to drop the expired token", || {
        fs::read_to_string(&env_file).is_ok_and(|t| t.contains("KITE_ACCESS_TOKEN=\n"))
    });
    let text = fs::read_to_string(&env_file).unwrap();
    assert!(!text.contains(&token), "{text}");
    assert!(
        text.contains(&format!("KITE_API_KEY={}\n", sim.api_key())),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. the periodic profile check

#[test]
fn periodic_check_invalidates_killed_tokens_but_not_on_transient_faults() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[kite]\ntimeout = \"1s\"\n[expiry]\nverify_every = \"1s\"\n")
        .start();
    let mut watch = Watch::socket(&daemon);
    let token = login_headless(&daemon);
    watch.expect("token_new");
    let profile_calls = || sim.calls_to("GET", "/user/profile");
    // The check repeats.
    eventually(WAIT, "two successful profile checks", || {
        profile_calls()
            .iter()
            .filter(|c| c.status == Some(200))
            .count()
            >= 2
    });
    // Checks run one at a time, and a call is logged when it arrives: so a call with `status`
    // made after the fault was queued, followed by a good one, means that fault was handled.
    let fault_then_good = |since: usize, status: Option<u16>| {
        let calls = profile_calls();
        let calls = calls.get(since..).unwrap_or_default();
        calls
            .iter()
            .position(|c| c.status == status)
            .is_some_and(|i| calls[i + 1..].iter().any(|c| c.status == Some(200)))
    };

    // A 503 is transient.
    let since = profile_calls().len();
    sim.fail_next(1, 503);
    eventually(WAIT, "a check answered 503, then a good one", || {
        fault_then_good(since, Some(503))
    });
    assert_eq!(status(&daemon).state, TokenState::Valid);

    // So is a Kite that never answers (kite.timeout = 1s).
    let since = profile_calls().len();
    sim.set_fault(1, Fault::Hang);
    eventually(WAIT, "a hung check, then a good one", || {
        fault_then_good(since, None)
    });
    assert_eq!(status(&daemon).state, TokenState::Valid);
    assert_eq!(get_token(&daemon), token);
    assert!(daemon.log().contains("will try again"), "{}", daemon.log());

    // A token Kite killed is caught by the next check. It is the first event after token_new:
    // the faults above invalidated nothing.
    sim.kill_access_token(&token);
    let (line, event) = watch.next_line();
    assert_eq!(event["event"], "token_invalidated", "{line}");
    assert!(!line.contains(&token), "{line}");
    assert_eq!(status(&daemon).state, TokenState::Invalidated);
    let out = daemon.ctl(&["get-token"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// 4. the pre-market reminder

const EVERY_SECOND: &str = "*/1 * * * * *";

#[test]
fn reminder_fires_on_trading_days_without_a_token_only() {
    let sim = sim();
    // Monday 2026-11-23, a trading day.
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!("[expiry]\nreminder = \"{EVERY_SECOND}\"\n"))
        .env("KITED_FAKE_NOW", "2026-11-23T08:44:50+05:30")
        .start();
    let mut watch = Watch::socket(&daemon);
    let reminder = watch.expect_within("login_required", Duration::from_secs(3));
    let url = reminder["login_url"]
        .as_str()
        .expect("login_url in the reminder");
    assert!(url.starts_with(&sim.login_url()), "{url}");
    assert!(url.contains(&format!("api_key={}", sim.api_key())), "{url}");

    // With a valid token: no reminder. Nothing can show that a reminder was rightly not sent
    // except waiting, so this waits a bounded 3 s (three reminder ticks). The reminder check and
    // its event happen in one step with no await between, so once token_new has been read, any
    // later login_required would be a bug.
    login_headless(&daemon);
    watch.expect("token_new");
    watch.assert_none_within("login_required", Duration::from_secs(3));
    // ...and the reminder was still running: without a token it comes back.
    logout(&daemon);
    watch.expect("token_invalidated");
    watch.expect_within("login_required", Duration::from_secs(3));
}

#[test]
fn reminder_skips_holidays() {
    let sim = sim();
    // Monday 2026-11-23 is listed as a holiday; Tuesday is not. Starting 3 s before midnight,
    // the first reminder must come at or after midnight: the ticks before it fell on the
    // holiday. (This replaces a negative wait with a positive observation.)
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[expiry]\nreminder = \"{EVERY_SECOND}\"\nholidays = [\"2026-11-23\"]\n"
        ))
        .env("KITED_FAKE_NOW", "2026-11-23T23:59:57+05:30")
        .start();
    let mut watch = Watch::socket(&daemon);
    let reminder = watch.expect_within("login_required", Duration::from_secs(6));
    let at = rfc3339(reminder["at"].as_str().unwrap());
    assert!(
        at >= rfc3339("2026-11-24T00:00:00+05:30"),
        "a reminder on the holiday: {reminder}"
    );
    assert!(watch.seen.is_empty(), "{:?}", watch.seen);
}

#[test]
fn reminder_skips_weekends() {
    let sim = sim();
    // Sunday 2026-11-29 23:59:57: the first reminder is Monday's.
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!("[expiry]\nreminder = \"{EVERY_SECOND}\"\n"))
        .env("KITED_FAKE_NOW", "2026-11-29T23:59:57+05:30")
        .start();
    let mut watch = Watch::socket(&daemon);
    let reminder = watch.expect_within("login_required", Duration::from_secs(6));
    assert!(
        rfc3339(reminder["at"].as_str().unwrap()) >= rfc3339("2026-11-30T00:00:00+05:30"),
        "a reminder on Sunday: {reminder}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. notify.command

/// Reads `DIR/EVENT.*` files written by the recording hook: (event, secret, stdin) each.
fn hook_records(dir: &Path, event: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{event}.")) && !name.ends_with(".tmp") {
            let text = fs::read_to_string(entry.path()).unwrap();
            let record = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            out.push(record);
        }
    }
    out
}

/// The hook: records each event in `DIR/EVENT.PID` (written whole, then renamed); on
/// `token_invalidated` it then hangs with a child, to be killed.
const HOOK: &str = r#"dir="$1"
f="$dir/$KITED_EVENT.$$"
{ echo "event=$KITED_EVENT"; echo "secret=${KITE_API_SECRET:+set}"; echo "stdin=$(cat)"; } > "$f.tmp"
mv "$f.tmp" "$f"
if [ "$KITED_EVENT" = token_invalidated ]; then
  sleep 600 &
  echo $! > "$dir/child.pid"
  echo $$ > "$dir/hook.pid"
  wait
fi
"#;

fn pid_alive(pid: i32) -> bool {
    // A zombie is dead: only its exit status is left for the parent to collect.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn notify_command_gets_the_event_never_the_token_and_is_killed_when_it_hangs() {
    let sim = sim();
    let files = scratch();
    let hook = script(&files.path().join("hook.sh"), HOOK);
    let out_dir = files.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\ncommand = [{}, {}]\n",
            toml_string(&hook.display().to_string()),
            toml_string(&out_dir.display().to_string())
        ))
        .env("KITED_COMMAND_TIMEOUT_MS", "1000")
        .start();
    let token = login_headless(&daemon);
    eventually(WAIT, "the hook to record token_new", || {
        !hook_records(&out_dir, "token_new").is_empty()
    });
    let records = hook_records(&out_dir, "token_new");
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["event"], "token_new");
    assert_eq!(
        record["secret"], "",
        "KITE_API_SECRET reached notify.command"
    );
    let event: Value = serde_json::from_str(&record["stdin"]).expect("stdin is one JSON line");
    assert_eq!(event["event"], "token_new");
    assert_eq!(event["user_id"], "AB1234");
    rfc3339(event["at"].as_str().unwrap());
    assert!(
        !record["stdin"].contains(&token),
        "the token reached notify.command"
    );

    // The hook hangs on token_invalidated, with a child of its own: both are killed after
    // KITED_COMMAND_TIMEOUT_MS.
    let hung_at = Instant::now();
    logout(&daemon);
    let read_pid = |name: &str| -> Option<i32> {
        fs::read_to_string(out_dir.join(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    eventually(WAIT, "the hook to hang", || {
        read_pid("hook.pid").is_some() && read_pid("child.pid").is_some()
    });
    let (hook_pid, child_pid) = (
        read_pid("hook.pid").unwrap(),
        read_pid("child.pid").unwrap(),
    );
    eventually(WAIT, "the hung hook and its child to be killed", || {
        !pid_alive(hook_pid) && !pid_alive(child_pid)
    });
    let took = hung_at.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "killed after {took:?}"
    );
    assert!(daemon.log().contains("ran over"), "{}", daemon.log());
    // The daemon carries on.
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// 6. hooks.env_file

fn env_map(path: &Path) -> HashMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_file_follows_the_token_privately() {
    let sim = sim();
    let files = scratch();
    let env_file = files.path().join("kite.env");
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[hooks]\nenv_file = {}\n",
            toml_string(&env_file.display().to_string())
        ))
        .start();
    let token = login_headless(&daemon);
    let expires_at = status(&daemon).expires_at.expect("a token has an expiry");
    eventually(WAIT, "the env file to hold the token", || {
        env_map(&env_file).get("KITE_ACCESS_TOKEN") == Some(&token)
    });
    let env = env_map(&env_file);
    assert_eq!(env["KITE_API_KEY"], sim.api_key());
    assert_eq!(env["KITE_TOKEN_EXPIRES_AT"], expires_at);
    let mode = fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "env file mode {mode:o}");
    // Rewritten atomically: no temp files left beside it.
    let names: Vec<_> = fs::read_dir(files.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("kite.env")]);

    logout(&daemon);
    eventually(WAIT, "the env file to drop the token", || {
        env_map(&env_file)
            .get("KITE_ACCESS_TOKEN")
            .map(String::as_str)
            == Some("")
    });
    let env = env_map(&env_file);
    assert_eq!(env["KITE_TOKEN_EXPIRES_AT"], "");
    assert!(!fs::read_to_string(&env_file).unwrap().contains(&token));
    let mode = fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "env file mode {mode:o}");
}

// ---------------------------------------------------------------------------------------------
// 7. the account guard

#[test]
fn login_as_another_user_is_refused_and_the_old_token_kept() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[kite]\nuser_id = \"ZZ9999\"\n")
        .start();
    sim.set_user("ZZ9999", "Zed Nine");
    let token = login_headless(&daemon);
    let mut watch = Watch::socket(&daemon);

    sim.set_user("AB1234", "Kite Tester");
    let answer = daemon.request(&json!({
        "op": "exchange",
        "request_token": sim.issue_request_token(),
    }));
    assert_eq!(answer["ok"], false, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("AB1234") && message.contains("ZZ9999"),
        "{message}"
    );

    // kitectl says the same in one line and exits 1.
    let out = daemon.ctl(&["exchange", &sim.issue_request_token()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AB1234") && stderr.contains("ZZ9999"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    assert_eq!(get_token(&daemon), token);
    assert_eq!(status(&daemon).user_id.as_deref(), Some("ZZ9999"));
    // No token_new was announced for the refused logins: the next event is the logout's.
    logout(&daemon);
    let (line, event) = watch.next_line();
    assert_eq!(event["event"], "token_invalidated", "{line}");
}

// ---------------------------------------------------------------------------------------------
// 8. renewal with a refresh token

#[test]
fn refresh_token_renews_at_the_cutoff_and_is_invalidated_on_logout() {
    let sim = sim();
    sim.set_login_time(Some(LOGIN_TIME.into()));
    sim.set_refresh_tokens(true);
    let daemon = Daemon::builder(&sim)
        .env("KITED_FAKE_NOW", &before_cutoff(3))
        .start();
    let mut watch = Watch::socket(&daemon);
    let first = login_headless(&daemon);
    watch.expect("token_new");
    let refresh = sim.valid_refresh_tokens();
    assert_eq!(refresh.len(), 1, "{refresh:?}");
    let refresh = &refresh[0];

    let renewed = watch.expect("token_new");
    assert!(
        watch.seen.iter().all(|e| e["event"] != "token_expired"),
        "{:?}",
        watch.seen
    );
    assert_eq!(
        renewed["expires_at"], "2026-11-25T06:00:00+05:30",
        "{renewed}"
    );
    let calls = sim.calls_to("POST", "/session/refresh_token");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.form_param("api_key"), Some(sim.api_key()));
    assert_eq!(call.form_param("refresh_token").as_ref(), Some(refresh));
    assert_eq!(
        call.form_param("checksum"),
        Some(refresh_checksum(&sim.api_key(), refresh, &sim.api_secret()))
    );
    assert_eq!(call.status, Some(200));
    let second = get_token(&daemon);
    assert_ne!(second, first);
    assert!(sim.valid_access_tokens().contains(&second));
    assert_eq!(status(&daemon).state, TokenState::Valid);

    logout(&daemon);
    let deletes = sim.calls_to("DELETE", "/session/token");
    assert!(
        deletes
            .iter()
            .any(|c| c.query_param("access_token") == Some(second.clone())),
        "{deletes:?}"
    );
    assert!(
        deletes
            .iter()
            .any(|c| c.query_param("refresh_token").as_ref() == Some(refresh)),
        "{deletes:?}"
    );
    assert!(sim.valid_refresh_tokens().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 9. postbacks

fn postback_body(checksum_secret: &str) -> Vec<u8> {
    let mut order: Value = serde_json::from_str(include_str!("../../mocks/postback.json")).unwrap();
    let checksum = postback_checksum(
        order["order_id"].as_str().unwrap(),
        order["order_timestamp"].as_str().unwrap(),
        checksum_secret,
    );
    order["checksum"] = Value::String(checksum);
    serde_json::to_vec_pretty(&order).unwrap()
}

fn post_postback(daemon: &Daemon, body: &[u8]) -> u16 {
    daemon
        .http(
            "POST",
            "/kite/postback",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body,
        )
        .status
}

#[test]
fn postbacks_are_verified_and_emitted() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[http]\npostbacks = true\n")
        .start();
    let mut watch = Watch::socket(&daemon);

    assert_eq!(
        post_postback(&daemon, &postback_body("not-the-secret")),
        403
    );
    let good = postback_body(&sim.api_secret());
    assert_eq!(post_postback(&daemon, &good), 200);
    // The bad one made no event: the first is the good one's.
    let (line, event) = watch.next_line();
    assert_eq!(event["event"], "order_update", "{line}");
    let sent: Value = serde_json::from_slice(&good).unwrap();
    assert_eq!(event["order"]["order_id"], "220303000308932", "{line}");
    assert_eq!(event["order"]["checksum"], sent["checksum"], "{line}");
    assert_eq!(event["order"]["status"], "COMPLETE", "{line}");
    assert!(!line.contains(&sim.api_secret()));

    let off = Daemon::start(&sim);
    assert_eq!(post_postback(&off, &good), 404);
}

// ---------------------------------------------------------------------------------------------
// 10. desktop notifications on a private D-Bus session bus

/// A python3 that has dbus-python and GLib (Debian: python3-dbus, python3-gi).
fn dbus_python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args([
                "-c",
                "import dbus, dbus.service, dbus.mainloop.glib; from gi.repository import GLib",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "no python3 with dbus-python and GLib bindings: `apt-get install python3-dbus python3-gi`"
    );
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A private `dbus-daemon` (session type, on a socket in a temp dir, with no service
/// activation so no real notification daemon can be started on it).
struct Bus {
    daemon: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl Bus {
    fn start() -> Bus {
        let dir = scratch();
        let config = dir.path().join("bus.conf");
        fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().join("bus").display()
            ),
        )
        .unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dbus-daemon (Debian package dbus-daemon)");
        let address = first_line(&mut daemon, "dbus-daemon", WAIT);
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        Bus {
            daemon,
            address,
            dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        kill_child(&mut self.daemon);
    }
}

/// `tests/dbus/notification_server.py` on a [`Bus`], recording Notify calls.
struct Notifications {
    child: Child,
    log: PathBuf,
    address: String,
}

impl Notifications {
    fn start(bus: &Bus, hang: bool) -> Notifications {
        let script = Notifications::script();
        let log = bus
            .dir
            .path()
            .join(if hang { "hung.jsonl" } else { "notify.jsonl" });
        let mut command = Command::new(dbus_python());
        command
            .arg(&script)
            .arg("--log")
            .arg(&log)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if hang {
            command.arg("--hang");
        }
        let mut child = command
            .spawn()
            .expect("cannot start the notification server");
        let ready = first_line(&mut child, "notification_server.py", WAIT);
        assert_eq!(ready, "ready");
        Notifications {
            child,
            log,
            address: bus.address.clone(),
        }
    }

    /// Every Notify call so far.
    fn calls(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("summary").is_some())
            .collect()
    }

    fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        eventually(WAIT, what, || {
            found = self.calls().into_iter().find(|c| check(c));
            found.is_some()
        });
        found.unwrap()
    }

    /// A click on the notification's button `key`.
    fn invoke(&self, id: u64, key: &str) {
        let status = Command::new(dbus_python())
            .arg(Self::script())
            .arg("--invoke")
            .arg(id.to_string())
            .arg(key)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .stdout(Stdio::null())
            .status()
            .expect("cannot run notification_server.py --invoke");
        assert!(status.success(), "notification_server.py --invoke failed");
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/notification_server.py")
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// A fake `xdg-open` that records its arguments (and whether it saw the api secret).
fn fake_opener(dir: &Path) -> (PathBuf, PathBuf) {
    let record = dir.join("opened");
    let opener = script(
        &dir.join("fake-open"),
        &format!(
            "{{ echo \"secret=${{KITE_API_SECRET:+set}}\"; for a in \"$@\"; do echo \"arg=$a\"; done; }} > {0}.tmp\nmv {0}.tmp {0}\n",
            record.display()
        ),
    );
    (opener, record)
}

#[test]
fn desktop_notifications_and_the_log_in_button() {
    let bus = Bus::start();
    let server = Notifications::start(&bus, false);
    let files = scratch();
    let (opener, opened) = fake_opener(files.path());
    let sim = sim();
    sim.set_login_time(Some(LOGIN_TIME.into()));
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[expiry]\nwarn_before = [\"15m\"]\n[notify]\nopen_command = [{}]\n",
            toml_string(&opener.display().to_string())
        ))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("KITED_FAKE_NOW", &before_cutoff(15 * 60 + 3))
        .start();
    let mut watch = Watch::socket(&daemon);

    login_headless(&daemon);
    let new = server.wait_for("a Logged in notification", |c| {
        c["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("Logged in as Kite Tester"))
    });
    assert_eq!(new["app_name"], "kited", "{new}");
    assert_eq!(
        new["summary"], "Logged in as Kite Tester until 06:00 today",
        "{new}"
    );

    watch.expect("token_expiring");
    let warning = server.wait_for("the expiry warning", |c| {
        c["summary"] == "Kite token expires in 15 minutes"
    });
    let actions: Vec<&str> = warning["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        actions.chunks(2).any(|pair| pair == ["login", "Log in"]),
        "{warning}"
    );

    // Click "Log in". kited listens for the click only once Notify has returned (notify-rust
    // subscribes after showing), so a click in that instant would be lost, as it would be on a
    // real desktop; the test clicks again until the opener runs.
    let id = warning["id"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT;
    while !opened.exists() {
        assert!(
            Instant::now() < deadline,
            "the opener never ran; log:\n{}",
            daemon.log()
        );
        server.invoke(id, "login");
        let until = Instant::now() + Duration::from_millis(500);
        while !opened.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let record = fs::read_to_string(&opened).unwrap();
    assert!(
        record.contains("secret=\n"),
        "the opener saw KITE_API_SECRET: {record}"
    );
    let args: Vec<&str> = record
        .lines()
        .filter_map(|l| l.strip_prefix("arg="))
        .collect();
    assert_eq!(args.len(), 1, "{record}");
    let url = url::Url::parse(args[0]).unwrap();
    assert!(args[0].starts_with(&sim.login_url()), "{url}");
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("api_key"), Some(&sim.api_key()), "{url}");
    assert_eq!(query.get("v").map(String::as_str), Some("3"), "{url}");
    assert!(
        query
            .get("redirect_params")
            .is_some_and(|p| p.starts_with("state=")),
        "{url}"
    );
}

#[test]
fn no_session_bus_is_one_warning_and_the_daemon_carries_on() {
    let sim = sim();
    let files = scratch();
    let hook = script(
        &files.path().join("hook.sh"),
        &format!("touch {}/$KITED_EVENT\n", files.path().display()),
    );
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ncommand = [{}]\n",
            toml_string(&hook.display().to_string())
        ))
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            &format!("unix:path={}/no-bus", files.path().display()),
        )
        .env("RUST_LOG", "info,kited=debug")
        .start();
    login_headless(&daemon);
    logout(&daemon);
    // Two desktop notifications were tried and failed (the second at debug level).
    eventually(WAIT, "both notifications to be tried", || {
        daemon.log().contains("desktop notification not shown")
    });
    let log = daemon.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("desktop notifications unavailable"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    eventually(WAIT, "notify.command to run anyway", || {
        files.path().join("token_invalidated").exists()
    });
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
    login_headless(&daemon);
}

#[test]
fn a_notification_server_that_never_answers_wedges_nothing() {
    let bus = Bus::start();
    let server = Notifications::start(&bus, true);
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let token = login_headless(&daemon);
    server.wait_for("the unanswered Notify", |c| c["answered"] == false);
    // While the Notify is pending, the socket answers at once, again and again.
    let pending_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < pending_until {
        let started = Instant::now();
        let out = daemon.ctl(&["ping"]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(took < Duration::from_secs(1), "ping took {took:?}");
        assert_eq!(get_token(&daemon), token);
    }
    // More events are not held up behind the pending one.
    logout(&daemon);
    login_headless(&daemon);
    // And the pending call is given up on (notify's D-Bus timeout is 5 s).
    eventually(WAIT, "the notification timeout warning", || {
        daemon.log().contains("did not answer within")
    });
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
}

#[test]
fn desktop_false_sends_no_notifications() {
    let bus = Bus::start();
    let server = Notifications::start(&bus, false);
    let sim = sim();
    let files = scratch();
    let hook = script(
        &files.path().join("hook.sh"),
        &format!("touch {}/$KITED_EVENT\n", files.path().display()),
    );
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\ncommand = [{}]\n",
            toml_string(&hook.display().to_string())
        ))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    login_headless(&daemon);
    logout(&daemon);
    // The notifier handles events in order, starting the command and the desktop notification
    // for each together; once the command for the last event has run, a desktop notification
    // would have been sent within milliseconds. No event can prove a notification was rightly
    // not sent, so this then allows a bounded 500 ms for one to arrive.
    eventually(WAIT, "notify.command for the logout", || {
        files.path().join("token_invalidated").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.calls(), Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// 11. get-token --wait

/// Whether `pid` is blocked (state S) holding a socket: a kitectl waiting for its answer.
fn blocked_on_a_socket(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let sleeping = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('S'));
    let has_socket = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten().any(|fd| {
                fs::read_link(fd.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
        })
        .unwrap_or(false);
    sleeping && has_socket
}

#[test]
fn get_token_wait_wakes_when_the_token_arrives() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let mut child = daemon
        .ctl_command(&["get-token", "--wait", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    eventually(WAIT, "kitectl to wait on the socket", || {
        blocked_on_a_socket(pid)
    });
    assert!(child.try_wait().unwrap().is_none(), "kitectl gave up early");

    let request_token = sim.issue_request_token();
    let answer = daemon.request(&json!({"op": "exchange", "request_token": request_token}));
    let exchanged = Instant::now();
    assert_eq!(answer["ok"], true, "{answer}");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            exchanged.elapsed() < Duration::from_secs(5),
            "kitectl still waiting 5 s after the exchange"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let woke_after = exchanged.elapsed();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success(), "{status}: {stdout}");
    assert_eq!(stdout.trim(), get_token(&daemon));
    assert!(
        woke_after < Duration::from_secs(1),
        "kitectl woke {woke_after:?} after the exchange"
    );
}
