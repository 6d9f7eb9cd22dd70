//! Configuration errors at start (exit 78) and reloads on SIGHUP: origins, warn windows, reminders, the public URL.

use std::time::{Duration, Instant};

use kite_proto::TokenState;
use kite_tests::Daemon;
use rustix::process::Signal;
use serde_json::{json, Value};

use crate::helper::systemd::{ok, NotifySocket, QUIET};
use crate::helper::{browser_login, daemon_lines, sim, status, text};

/// `GET /api/token/status` with an `Origin`; returns the Access-Control-Allow-Origin it got.
fn cors_for(daemon: &Daemon, origin: &str) -> Option<String> {
    let reply = daemon.http("GET", "/api/token/status", &[("Origin", origin)], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .header("access-control-allow-origin")
        .map(str::to_string)
}

#[test]
fn sighup_reloads_origins_and_warn_windows_keeping_token_and_socket() {
    let sim = sim();
    let config = |origin: &str, warn: &str| {
        format!(
            "{QUIET}[http]\nallowed_origins = [\"{origin}\"]\n[expiry]\nwarn_before = [\"{warn}\"]\n"
        )
    };
    let (mut daemon, mut notify, _) =
        NotifySocket::start(Daemon::builder(&sim).config_toml(&config("http://a.example", "1m")));
    let pid = daemon.pid();
    let token = browser_login(&daemon).token;
    assert_eq!(status(&daemon).state, TokenState::Valid);
    assert_eq!(
        cors_for(&daemon, "http://a.example").as_deref(),
        Some("http://a.example")
    );
    assert_eq!(cors_for(&daemon, "http://b.example"), None);

    // A good config: new origin and a warn window wider than any token's life.
    daemon.write_config(&config("http://b.example", "48h"));
    daemon.signal(Signal::HUP);
    notify.wait_for("RELOADING=1", || daemon.log());
    let done = notify.wait_for("READY=1", || daemon.log());
    assert!(!done.contains("reload failed"), "{done:?}");
    assert_eq!(
        cors_for(&daemon, "http://b.example").as_deref(),
        Some("http://b.example"),
        "the new origin gets CORS headers without a restart"
    );
    assert_eq!(cors_for(&daemon, "http://a.example"), None);
    assert_eq!(
        status(&daemon).state,
        TokenState::Expiring,
        "warn_before reloaded"
    );
    let again = daemon.request(&json!({"op": "get_token"}));
    assert_eq!(again["access_token"], token.as_str(), "token kept: {again}");
    assert!(daemon.socket_path().exists());
    assert!(daemon.is_running());
    assert_eq!(daemon.pid(), pid);

    // A broken config: reported, the old one kept, the daemon alive.
    let log_before = daemon.log().len();
    daemon.write_config("[expiry]\nwarn_before = \"soon\"\n");
    daemon.signal(Signal::HUP);
    notify.wait_for("RELOADING=1", || daemon.log());
    let done = notify.wait_for("READY=1", || daemon.log());
    assert!(done.contains("reload failed"), "{done:?}");
    let log = daemon.log();
    let new_lines = &log[log_before..];
    let config_path = daemon.config_path().unwrap().display().to_string();
    assert!(
        new_lines
            .lines()
            .any(|l| l.contains("ERROR") && l.contains(&config_path)),
        "an error naming {config_path}:\n{new_lines}"
    );
    assert!(daemon.is_running());
    assert_eq!(
        cors_for(&daemon, "http://b.example").as_deref(),
        Some("http://b.example"),
        "old config kept"
    );
    assert_eq!(status(&daemon).state, TokenState::Expiring);
    let again = daemon.request(&json!({"op": "get_token"}));
    assert_eq!(again["access_token"], token.as_str());
    assert!(ok(&daemon.ctl(&["ping"])));
}

/// Starts kited with `toml` and expects it to refuse: exit 78 and one log line holding every
/// string `needles` names (given the daemon, for its paths).
fn assert_refused_at_start(toml: &str, needles: impl Fn(&Daemon) -> Vec<String>) {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim).config_toml(toml).spawn();
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("kited should refuse a broken config");
    assert_eq!(exit.code(), Some(78), "EX_CONFIG; log:\n{}", daemon.log());
    let log = daemon.log();
    let lines = daemon_lines(&log);
    assert_eq!(lines.len(), 1, "one line:\n{log}");
    for needle in needles(&daemon) {
        assert!(lines[0].contains(&needle), "{needle:?} in:\n{log}");
    }
}

#[test]
fn broken_config_at_start_exits_78_with_one_line() {
    assert_refused_at_start("[expiry]\ncutof = \"06:00\"\n", |daemon| {
        let path = daemon.config_path().unwrap().display().to_string();
        vec![path, "cutof".into()]
    });
}

#[test]
fn a_reminder_that_is_not_cron_is_a_config_error_at_start() {
    assert_refused_at_start("[expiry]\nreminder = \"0 45 8 * * Mon-Fry\"\n", |_| {
        vec!["expiry.reminder".into(), "Mon-Fry".into()]
    });
}

/// Reads `watch` events from a raw socket subscription.
struct EventLines {
    stream: std::os::unix::net::UnixStream,
    lines: std::io::Lines<std::io::BufReader<std::os::unix::net::UnixStream>>,
}

impl EventLines {
    fn subscribe(daemon: &Daemon) -> EventLines {
        use std::io::{BufRead, Write};
        let stream = daemon.connect_ipc();
        (&stream).write_all(b"{\"op\":\"watch\"}\n").unwrap();
        let mut lines = std::io::BufReader::new(stream.try_clone().unwrap()).lines();
        let first = lines.next().expect("a first line").expect("read");
        assert_eq!(first, r#"{"ok":true}"#);
        EventLines { stream, lines }
    }

    /// Reads until an event named `name` arrives within `within`.
    fn expect(&mut self, name: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Some(Ok(line)) = self.lines.next() else {
                break;
            };
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["event"] == name {
                return event;
            }
            seen.push(line);
        }
        panic!("no {name} event within {within:?}; saw {seen:?}");
    }
}

#[test]
fn sighup_with_a_bad_reminder_is_refused_and_the_old_schedule_kept() {
    let sim = sim();
    let every_second = format!("{QUIET}[expiry]\nreminder = \"*/1 * * * * *\"\n");
    // Monday 2026-11-23, a trading day, before the default reminder time: only the configured
    // every-second reminder can fire within the test.
    let (daemon, mut notify, _) = NotifySocket::start(
        Daemon::builder(&sim)
            .config_toml(&every_second)
            .env("KITED_FAKE_NOW", "2026-11-23T07:00:00+05:30"),
    );
    let mut events = EventLines::subscribe(&daemon);
    events.expect("login_required", Duration::from_secs(5));

    daemon.write_config(&format!("{QUIET}[expiry]\nreminder = \"every morning\"\n"));
    daemon.signal(Signal::HUP);
    notify.wait_for("RELOADING=1", || daemon.log());
    let done = notify.wait_for("READY=1", || daemon.log());
    assert!(
        done.contains("reload failed") && done.contains("expiry.reminder"),
        "systemd is told why: {done:?}"
    );
    assert!(
        daemon
            .log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("expiry.reminder")),
        "the log says why:\n{}",
        daemon.log()
    );
    // The old every-second schedule still runs.
    events.expect("login_required", Duration::from_secs(5));
    events.expect("login_required", Duration::from_secs(5));
}

#[test]
fn sighup_moves_the_callback_url_to_a_new_public_url() {
    let sim = sim();
    let (daemon, mut notify, _) = NotifySocket::start(Daemon::builder(&sim).config_toml(QUIET));
    let route = |daemon: &Daemon| {
        let reply = daemon.http("GET", "/api/token/callback-url", &[], b"");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body: Value = serde_json::from_str(&reply.text()).unwrap();
        body["callback_url"].as_str().unwrap().to_string()
    };
    assert_eq!(route(&daemon), daemon.callback_url());

    let public = "https://kite.example.com/auth/callback";
    daemon.write_config(&format!(
        "{QUIET}[http]\npublic_url = \"https://kite.example.com\"\n"
    ));
    daemon.signal(Signal::HUP);
    notify.wait_for("RELOADING=1", || daemon.log());
    let done = notify.wait_for("READY=1", || daemon.log());
    assert!(!done.contains("reload failed"), "{done:?}");
    assert_eq!(route(&daemon), public, "GET /api/token/callback-url");
    let answer = daemon.request(&json!({"op": "login_url"}));
    assert_eq!(answer["callback_url"], public, "{answer}");
    let login = daemon.ctl(&["login"]);
    assert!(ok(&login), "{}", text(&login.stderr));
    assert!(
        text(&login.stderr).contains(public),
        "kitectl login names the new callback URL: {}",
        text(&login.stderr)
    );
}
