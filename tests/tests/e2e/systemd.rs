//! kited as a systemd service: this test plays systemd's part (a `NOTIFY_SOCKET` datagram
//! socket, `CREDENTIALS_DIRECTORY`, `JOURNAL_STREAM`, `WATCHDOG_USEC`, SIGHUP and SIGTERM) against
//! the real binaries, and checks the unit files agree with what kited and kitectl expect.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kite_proto::TokenState;
use kite_tests::harness::{bin, eventually};
use kite_tests::{follow_browser_login, Daemon, DaemonBuilder};
use rustix::process::Signal;
use serde_json::{json, Value};

use crate::helper::{browser_login, daemon_lines, sim, status, text};

/// How long any one datagram from kited may take to arrive.
const NOTIFY_DEADLINE: Duration = Duration::from_secs(10);

/// The datagram socket systemd listens on (`NOTIFY_SOCKET`), with the messages received so far.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    received: Vec<String>,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("kited-notify-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("cannot bind the notify socket");
        NotifySocket {
            _dir: dir,
            path,
            socket,
            received: Vec::new(),
        }
    }

    /// Starts `builder`'s daemon reporting to a new notify socket; returns the daemon, the
    /// socket and the READY=1 datagram once it arrived.
    fn start(builder: DaemonBuilder) -> (Daemon, NotifySocket, String) {
        let mut notify = NotifySocket::new();
        let daemon = builder.env("NOTIFY_SOCKET", notify.path()).start();
        let ready = notify.wait_for("READY=1", || daemon.log());
        (daemon, notify, ready)
    }

    fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next datagram within `timeout`, if any.
    fn recv(&mut self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.received.push(message.clone());
        Some(message)
    }

    /// Reads datagrams until one carries the assignment `line` (e.g. `READY=1`); returns that
    /// datagram. Panics with everything received (and the daemon log) after [`NOTIFY_DEADLINE`].
    fn wait_for(&mut self, line: &str, log: impl Fn() -> String) -> String {
        let deadline = Instant::now() + NOTIFY_DEADLINE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(message) if message.lines().any(|l| l == line) => return message,
                Some(_) => continue,
                None => break,
            }
        }
        panic!(
            "no {line} within {NOTIFY_DEADLINE:?}; received {:?}; log:\n{}",
            self.received,
            log()
        );
    }

    /// Datagrams arriving within `window`.
    fn drain(&mut self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left.max(Duration::from_millis(1))) {
                Some(message) => out.push(message),
                None => break,
            }
        }
        out
    }
}

/// No desktop (there is no session bus here) and nothing else surprising.
const QUIET: &str = "[notify]\ndesktop = false\n";

fn ok(output: &Output) -> bool {
    output.status.success()
}

/// `GET /api/token/status` with an `Origin`; returns the Access-Control-Allow-Origin it got.
fn cors_for(daemon: &Daemon, origin: &str) -> Option<String> {
    let reply = daemon.http("GET", "/api/token/status", &[("Origin", origin)], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .header("access-control-allow-origin")
        .map(str::to_string)
}

#[test]
fn ready_only_once_socket_and_http_answer_then_clean_stop_on_sigterm() {
    let sim = sim();
    let mut notify = NotifySocket::new();
    let mut daemon = Daemon::builder(&sim)
        .config_toml(QUIET)
        .env("NOTIFY_SOCKET", notify.path())
        .spawn();

    let ready = notify.wait_for("READY=1", || daemon.log());
    // At this very moment both front ends must already answer: systemd lets `systemctl start`
    // return and ordered units start on READY=1.
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], true, "ping right after READY=1: {ping}");
    let (code, _, body) = daemon.http_get("/healthz");
    assert_eq!(code, 200, "/healthz right after READY=1: {body}");
    let out = daemon.ctl(&["ping"]);
    assert!(
        ok(&out),
        "kitectl ping after READY=1: {}",
        text(&out.stderr)
    );
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=profile ")),
        "READY=1 comes with a STATUS= line: {ready:?}"
    );
    assert!(
        notify
            .received
            .iter()
            .filter(|m| m.contains("READY=1"))
            .count()
            == 1,
        "READY=1 once: {:?}",
        notify.received
    );

    assert!(daemon.socket_path().exists());
    daemon.signal(Signal::TERM);
    notify.wait_for("STOPPING=1", || daemon.log());
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("kited did not exit after SIGTERM; log:\n{}", daemon.log()));
    assert!(
        exit.success(),
        "exit after SIGTERM: {exit}; log:\n{}",
        daemon.log()
    );
    assert!(
        !daemon.socket_path().exists(),
        "socket file left behind after SIGTERM"
    );
}

#[test]
fn sigterm_right_after_ready_is_a_clean_stop() {
    // `systemctl start kited && systemctl stop kited`: the stop may follow READY=1 at once.
    let sim = sim();
    for _ in 0..3 {
        let mut notify = NotifySocket::new();
        let mut daemon = Daemon::builder(&sim)
            .config_toml(QUIET)
            .env("NOTIFY_SOCKET", notify.path())
            .spawn();
        notify.wait_for("READY=1", || daemon.log());
        daemon.signal(Signal::TERM);
        let exit = daemon.wait_exit(Duration::from_secs(10)).expect("no exit");
        assert!(exit.success(), "{exit}; log:\n{}", daemon.log());
        assert!(!daemon.socket_path().exists());
    }
}

#[test]
fn status_line_follows_the_token() {
    let sim = sim();
    let (daemon, mut notify, ready) = NotifySocket::start(Daemon::builder(&sim).config_toml(QUIET));
    assert!(ready.contains("login required"), "{ready:?}");
    let token = browser_login(&daemon).token;
    let deadline = Instant::now() + NOTIFY_DEADLINE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(message) = notify.recv(left) else {
            break;
        };
        if message.contains("AB1234 until ") {
            assert!(!message.contains(&token), "token in STATUS=: {message:?}");
            return;
        }
        seen.push(message);
    }
    panic!("no STATUS= naming the logged-in user; got {seen:?}");
}

#[test]
fn api_secret_from_credentials_directory() {
    let sim = sim();
    let creds = tempfile::tempdir().unwrap();
    let secret_file = creds.path().join("kite-api-secret");
    // What LoadCredential= copies: the file as it is, trailing newline included.
    fs::write(&secret_file, format!("{}\n", sim.api_secret())).unwrap();
    fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o400)).unwrap();
    let mut daemon = Daemon::builder(&sim)
        .config_toml(QUIET)
        .no_api_secret()
        .env_remove("KITE_API_SECRET")
        .env("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())
        .start();
    assert!(status(&daemon).configured);
    let token = browser_login(&daemon).token;
    assert!(sim.valid_access_tokens().contains(&token));
    daemon.terminate();
    let log = daemon.log();
    assert!(
        !log.contains(&sim.api_secret()),
        "secret in the log:\n{log}"
    );
    assert!(!log.contains(&token), "token in the log:\n{log}");
}

#[test]
fn wrong_credential_secret_fails_the_login() {
    // The sim checks the checksum, so the login above proves the credential was used.
    let sim = sim();
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("kite-api-secret"), "not-the-secret\n").unwrap();
    let daemon = Daemon::builder(&sim)
        .config_toml(QUIET)
        .no_api_secret()
        .env("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())
        .start();
    let answer = daemon.request(&json!({"op": "login_url"}));
    let (status_code, body) = follow_browser_login(&daemon, answer["login_url"].as_str().unwrap());
    assert_ne!(status_code, 200, "a wrong secret must not log in: {body}");
    let token = daemon.request(&json!({"op": "get_token"}));
    assert_eq!(token["ok"], false, "{token}");
    assert!(sim.valid_access_tokens().is_empty());
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

/// Sends `ping` and `request` in one write on a fresh connection and reads the pong: once it
/// is read, kited has taken `request` too and is working on it. Returns the connection.
fn request_in_flight(
    daemon: &Daemon,
    request: &Value,
) -> std::io::BufReader<std::os::unix::net::UnixStream> {
    use std::io::{BufRead, Write};
    let stream = daemon.connect_ipc();
    let lines = format!("{}\n{request}\n", json!({"op": "ping"}));
    (&stream).write_all(lines.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut pong = String::new();
    reader.read_line(&mut pong).unwrap();
    assert!(pong.contains("\"version\""), "{pong}");
    reader
}

/// The next answer line on `reader`, parsed; panics on EOF (kited hung up without answering).
fn answer_on(reader: &mut std::io::BufReader<std::os::unix::net::UnixStream>) -> Value {
    use std::io::BufRead;
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "kited hung up without answering");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn a_stop_answers_a_waiting_get_token_instead_of_hanging_up() {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim).config_toml(QUIET).start();
    let mut waiting = request_in_flight(&daemon, &json!({"op": "get_token", "wait_secs": 60}));
    let started = Instant::now();
    daemon.signal(Signal::TERM);
    let answer = answer_on(&mut waiting);
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["kind"], "login_required", "{answer}");
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("kited stops");
    assert!(exit.success(), "{exit}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait held up the stop for {:?}",
        started.elapsed()
    );
}

#[test]
fn a_stop_lets_an_exchange_in_flight_finish_and_answer() {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim)
        .config_toml(&format!("{QUIET}[kite]\ntimeout = \"2s\"\n"))
        .start();
    sim.set_fault(1, kite_tests::Fault::Hang);
    let request = json!({"op": "exchange", "request_token": sim.issue_request_token()});
    let mut exchanging = request_in_flight(&daemon, &request);
    eventually(Duration::from_secs(5), "the exchange to reach Kite", || {
        !sim.calls_to("POST", "/session/token").is_empty()
    });
    daemon.signal(Signal::TERM);
    // kited waits for Kite (kite.timeout) rather than hang up on a request in flight.
    let answer = answer_on(&mut exchanging);
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["error"]["kind"], "kite_timeout", "{answer}");
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("kited stops after the exchange");
    assert!(exit.success(), "{exit}");
}

/// `kited ARGS` with a clean environment rooted at `home` (XDG dirs below it).
fn kited_in(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("kited"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .envs(envs.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    cmd.output().expect("cannot run kited")
}

fn rows(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(char::is_whitespace)?;
            Some((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

#[test]
fn check_config_shows_where_the_secret_comes_from_never_the_value() {
    const SECRET: &str = "check-config-secret-5f2e9a";
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let config_dir = home.join("config/kited");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(
        config_dir.join("default.toml"),
        "[http]\nlisten = \"127.0.0.1:8179\"\n",
    )
    .unwrap();
    let never_shows_secret = |out: &Output| {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!all.contains(SECRET), "the secret leaked:\n{all}");
    };

    // From the environment.
    let out = kited_in(
        home,
        &["check-config"],
        &[("KITE_API_KEY", "key1"), ("KITE_API_SECRET", SECRET)],
    );
    never_shows_secret(&out);
    assert!(ok(&out), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let table = rows(&stdout);
    assert!(table["kite.api_secret"].starts_with("set"), "{stdout}");
    assert_eq!(table["kite.api_key"], "key1");
    assert!(
        stdout.contains("http://127.0.0.1:8179/auth/callback"),
        "callback URL to register:\n{stdout}"
    );

    // From systemd's credential directory (trailing newline and all).
    let creds = home.join("creds");
    fs::create_dir_all(&creds).unwrap();
    fs::write(creds.join("kite-api-secret"), format!("{SECRET}\n")).unwrap();
    let out = kited_in(
        home,
        &["check-config"],
        &[
            ("KITE_API_KEY", "key1"),
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
        ],
    );
    never_shows_secret(&out);
    assert!(ok(&out), "{}", text(&out.stderr));
    assert!(
        rows(&text(&out.stdout))["kite.api_secret"].contains("credential"),
        "{}",
        text(&out.stdout)
    );

    // Not configured: exit 1, one stderr line, the secret shown as missing.
    let out = kited_in(home, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(rows(&text(&out.stdout))["kite.api_secret"], "missing");
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );

    // The file the systemd unit loads with LoadCredential= is also kited's own last source, and
    // a loose mode is flagged.
    let unit_secret = config_dir.join("default.api-secret");
    fs::write(&unit_secret, format!("{SECRET}\n")).unwrap();
    fs::set_permissions(&unit_secret, fs::Permissions::from_mode(0o644)).unwrap();
    let out = kited_in(home, &["check-config"], &[("KITE_API_KEY", "key1")]);
    never_shows_secret(&out);
    assert!(ok(&out), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        rows(&stdout)["kite.api_secret"].contains("the profile's secret file"),
        "{stdout}"
    );
    assert!(stdout.contains("chmod 600"), "{stdout}");

    // A broken file: exit 78, nothing on stdout, one stderr line naming the file.
    let path = config_dir.join("default.toml");
    fs::write(&path, "[http]\nlisten = 8079\n").unwrap();
    let out = kited_in(home, &["check-config"], &[("KITE_API_SECRET", SECRET)]);
    never_shows_secret(&out);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
}

#[test]
fn rust_log_is_respected() {
    let sim = sim();
    let mut quiet = Daemon::builder(&sim)
        .config_toml(QUIET)
        .env("RUST_LOG", "warn")
        .start();
    assert!(ok(&quiet.ctl(&["status"])));
    quiet.terminate();
    let log = quiet.log();
    assert!(
        !daemon_lines(&log).iter().any(|l| l.contains("INFO")),
        "INFO lines with RUST_LOG=warn:\n{log}"
    );

    let mut chatty = Daemon::builder(&sim).config_toml(QUIET).start();
    chatty.terminate();
    let log = chatty.log();
    assert!(
        daemon_lines(&log).iter().any(|l| l.contains("INFO")),
        "no INFO lines with RUST_LOG=info:\n{log}"
    );
}

/// Runs an unconfigured kited with stderr to a file until READY=1, then SIGTERM; returns the
/// log. With `journal`, `JOURNAL_STREAM` names that file, as systemd does for the journal.
fn log_of_a_run(journal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr");
    let log = fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let stream = if journal {
        format!("{}:{}", meta.dev(), meta.ino())
    } else {
        // A journal stream inherited by a process whose stderr went elsewhere.
        format!("{}:{}", meta.dev(), meta.ino() + 1)
    };
    let mut notify = NotifySocket::new();
    let home = dir.path();
    let mut child = Command::new(bin("kited"))
        .env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", stream)
        .env("NOTIFY_SOCKET", notify.path())
        .args(["--listen", "127.0.0.1:0", "--socket"])
        .arg(home.join("kited.sock"))
        .arg("--state-dir")
        .arg(home.join("state"))
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    notify.wait_for("READY=1", || {
        fs::read_to_string(&log_path).unwrap_or_default()
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    fs::read_to_string(&log_path).unwrap()
}

fn has_timestamp(line: &str) -> bool {
    // 2026-11-23T06:00:00.123456Z
    line.as_bytes().windows(11).any(|w| {
        w[4] == b'-'
            && w[7] == b'-'
            && w[10] == b'T'
            && w[..4].iter().all(u8::is_ascii_digit)
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[8..10].iter().all(u8::is_ascii_digit)
    })
}

#[test]
fn journal_lines_have_priorities_and_no_timestamps_or_colours() {
    let log = log_of_a_run(true);
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            !has_timestamp(line),
            "timestamp under the journal: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "colour under the journal: {line:?}"
        );
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "no syslog priority prefix: {line:?}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<4>") && l.contains("not configured")),
        "a warning at priority 4:\n{log}"
    );
    assert!(log.lines().any(|l| l.starts_with("<6>")), "{log}");

    let plain = log_of_a_run(false);
    assert!(
        plain
            .lines()
            .all(|l| has_timestamp(l) && !l.starts_with('<')),
        "a stale JOURNAL_STREAM must not change the format:\n{plain}"
    );
    assert!(!plain.contains('\u{1b}'));
}

#[test]
fn watchdog_pings_only_when_asked_for_this_process() {
    let sim = sim();
    let (daemon, mut notify, _) = NotifySocket::start(
        Daemon::builder(&sim)
            .config_toml(QUIET)
            .env("WATCHDOG_USEC", "200000"),
    );
    let pings = notify
        .drain(Duration::from_millis(700))
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count();
    assert!(pings >= 3, "WATCHDOG=1 every 100 ms; got {pings}");
    drop(daemon);

    // WATCHDOG_PID names another process: not ours to ping for (the daemon runs meanwhile).
    let (_daemon, mut notify, _) = NotifySocket::start(
        Daemon::builder(&sim)
            .config_toml(QUIET)
            .env("WATCHDOG_USEC", "200000")
            .env("WATCHDOG_PID", "1"),
    );
    let pings: Vec<String> = notify.drain(Duration::from_millis(400));
    assert!(
        !pings.iter().any(|m| m.contains("WATCHDOG=1")),
        "pinged for another pid: {pings:?}"
    );
}

#[test]
fn no_notify_socket_is_fine() {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim)
        .config_toml(QUIET)
        .env_remove("NOTIFY_SOCKET")
        .start();
    daemon.signal(Signal::HUP);
    eventually(Duration::from_secs(5), "the reload to be logged", || {
        daemon.log().contains("reloaded")
    });
    assert!(daemon.terminate().success());
}

fn kitectl(args: &[&str]) -> Output {
    Command::new(bin("kitectl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run kitectl")
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = kitectl(&["completions", shell]);
        assert!(ok(&out), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(!script.trim().is_empty(), "{shell}: empty script");
        assert!(script.contains("get-token"), "{shell}: no get-token");
    }
    let out = kitectl(&["man"]);
    assert!(ok(&out), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH"), "not roff:\n{page}");
    assert!(page.contains("get\\-token") || page.contains("get-token"));
}

#[test]
fn every_help_has_an_example() {
    let kitectl_commands = [
        "get-token",
        "status",
        "login",
        "exchange",
        "logout",
        "env",
        "exec",
        "watch",
        "ping",
        "shutdown",
        "completions",
        "man",
    ];
    let mut missing = Vec::new();
    let mut check = |program: &str, args: Vec<&str>| {
        let out = Command::new(bin(program))
            .args(&args)
            .arg("--help")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let help = text(&out.stdout);
        if !out.status.success() || !help.contains("Example") {
            missing.push(format!("{program} {}", args.join(" ")));
        }
    };
    check("kitectl", vec![]);
    for command in kitectl_commands {
        check("kitectl", vec![command]);
    }
    check("kited", vec![]);
    check("kited", vec!["run"]);
    check("kited", vec!["check-config"]);
    assert!(missing.is_empty(), "--help without an example: {missing:?}");
}

/// The unit files, as `Key=value` lists per file (comments and sections dropped).
fn unit(name: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn values<'a>(unit: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn units_agree_with_kited_and_kitectl() {
    for (name, profile) in [("kited.service", "default"), ("kited@.service", "%i")] {
        let unit = unit(name);
        let one = |key: &str| {
            let v = values(&unit, key);
            assert_eq!(v.len(), 1, "{name}: {key}= {v:?}");
            v[0].to_string()
        };
        assert_eq!(one("Type"), "notify", "{name}");
        assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID", "{name}");
        assert_eq!(one("Restart"), "on-failure", "{name}");
        let exec = one("ExecStart");
        assert!(exec.starts_with("%h/.cargo/bin/kited "), "{name}: {exec}");
        assert!(
            exec.contains(&format!("--profile {profile} ")),
            "{name}: {exec}"
        );
        // The socket is where kitectl looks ($XDG_RUNTIME_DIR/kited/NAME.sock) and inside the
        // writable RuntimeDirectory; the state dir inside the StateDirectory.
        assert!(
            exec.contains(&format!("--socket %t/kited/{profile}.sock ")),
            "{name}: {exec}"
        );
        assert_eq!(one("RuntimeDirectory"), "kited", "{name}");
        assert_eq!(one("RuntimeDirectoryPreserve"), "yes", "{name}");
        assert!(
            exec.contains(&format!("--state-dir %S/kited/{profile} ")),
            "{name}: {exec}"
        );
        assert_eq!(one("StateDirectory"), format!("kited/{profile}"), "{name}");
        assert!(exec.ends_with(" run"), "{name}: {exec}");
        // The credential names kited reads from $CREDENTIALS_DIRECTORY: the api secret (must
        // exist), the push tokens and the Redis password (optional: a SetCredential= of the
        // same name is the fallback systemd uses when the file is missing; a bare newline reads
        // as no token).
        assert_eq!(
            values(&unit, "LoadCredential"),
            vec![
                format!("kite-api-secret:%E/kited/{profile}.api-secret"),
                format!("telegram-bot-token:%E/kited/{profile}.telegram-bot-token"),
                format!("ntfy-token:%E/kited/{profile}.ntfy-token"),
                format!("redis-password:%E/kited/{profile}.redis-password"),
            ],
            "{name}"
        );
        assert_eq!(
            values(&unit, "SetCredential"),
            vec![
                "telegram-bot-token:\\n",
                "ntfy-token:\\n",
                "redis-password:\\n"
            ],
            "{name}"
        );
        assert_eq!(one("RestartPreventExitStatus"), "78", "{name}");
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "read-only"),
            ("PrivateTmp", "yes"),
            ("PrivateUsers", "yes"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("LockPersonality", "yes"),
            ("MemoryDenyWriteExecute", "yes"),
            ("SystemCallArchitectures", "native"),
            ("RestrictNamespaces", "yes"),
            ("RestrictRealtime", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectControlGroups", "yes"),
            ("UMask", "0077"),
            ("CapabilityBoundingSet", ""),
        ] {
            assert_eq!(one(key), value, "{name}: {key}");
        }
        assert!(
            values(&unit, "SystemCallFilter").contains(&"@system-service"),
            "{name}"
        );
    }
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/verify.sh");
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok(),
        "systemd-analyze is not installed (the systemd package has it)"
    );
    let out = Command::new("sh")
        .arg(&script)
        .env("KITED_BIN_DIR", bin("kited").parent().unwrap())
        .output()
        .unwrap();
    assert!(
        ok(&out),
        "systemd/verify.sh failed:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
