//! The foundation, end to end: logging in (browser and headless), serving the token, restarts and
//! crashes, the socket's and state's privacy, configuration errors and the kitectl commands.
//!
//! Every wait here is a poll with a deadline (`eventually`, `wait_exit`), never a bare sleep.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone};
use kite_proto::checksum::session_checksum;
use kite_tests::harness::{bin, eventually};
use kite_tests::http_client;
use kite_tests::{follow_browser_login, Daemon};

use crate::helper::{
    browser_login, daemon_lines, login_state, mode, query_param, read_outputs, rfc3339_json, sim,
    the_new_token, wait_child,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "kitectl {args:?} exited {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Runs kitectl and asserts exit 0; returns stdout.
fn ctl_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.ctl(args);
    assert_eq!(
        code(&out),
        Some(0),
        "{}\n--- kited log:\n{}",
        describe(args, &out),
        daemon.log()
    );
    stdout(&out)
}

/// Runs kitectl, asserts the exit code and that stderr is exactly one `kitectl: …` line; returns
/// that line.
fn ctl_fails(daemon: &Daemon, args: &[&str], expected_code: i32) -> String {
    let out = daemon.ctl(args);
    assert_eq!(
        code(&out),
        Some(expected_code),
        "{}\n--- kited log:\n{}",
        describe(args, &out),
        daemon.log()
    );
    one_error_line(args, &out)
}

/// Asserts that stderr is exactly one non-empty line starting `kitectl:`; returns it.
fn one_error_line(args: &[&str], out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one stderr line; {}",
        describe(args, out)
    );
    assert!(
        lines[0].starts_with("kitectl:"),
        "the error line should start with `kitectl:`; {}",
        describe(args, out)
    );
    assert!(
        !lines[0].contains("Error {") && !lines[0].contains("panicked"),
        "the error line looks like a Rust debug dump; {}",
        describe(args, out)
    );
    lines[0].to_string()
}

/// `kitectl get-token`: asserts exit 0 and that stdout is the token alone plus a newline.
fn get_token(daemon: &Daemon) -> String {
    let out = ctl_ok(daemon, &["get-token"]);
    assert!(
        out.ends_with('\n') && out.lines().count() == 1,
        "get-token should print the token alone on one line: {out:?}"
    );
    let token = out.trim_end_matches('\n').to_string();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{out:?}"
    );
    token
}

fn status_json(daemon: &Daemon) -> Value {
    let out = ctl_ok(daemon, &["status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"))
}

/// `kitectl login`: asserts exit 0 and a single URL line on stdout; returns the URL.
fn login_url(daemon: &Daemon) -> String {
    let out = ctl_ok(daemon, &["login"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "login should print the URL alone: {out:?}");
    let url = lines[0].trim().to_string();
    assert!(url.starts_with("http"), "not a URL: {url:?}");
    url
}

/// `kitectl exchange VALUE` that must succeed; returns the token the sim issued.
fn headless_exchange(daemon: &Daemon, value: &str) -> String {
    let sim = daemon.sim();
    let before = sim.valid_access_tokens();
    let out = ctl_ok(daemon, &["exchange", value]);
    assert!(
        out.contains("Kite Tester") || out.contains("AB1234"),
        "exchange should say who logged in: {out:?}"
    );
    the_new_token(sim, &before)
}

/// GETs the sim's login page like a browser and returns the redirect `Location` (kited's
/// callback URL with the request token), without following it.
fn sim_redirect(login_url: &str) -> String {
    let reply = http_client::get(login_url).expect("GET login URL");
    assert_eq!(reply.status, 302, "sim login: {}", reply.text());
    reply
        .header("location")
        .expect("sim redirect has a Location")
        .to_string()
}

/// The path and query of an absolute URL (what to GET on the daemon).
fn path_and_query(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

fn ist() -> FixedOffset {
    FixedOffset::east_opt(5 * 3600 + 1800).unwrap()
}

/// The first 06:00 IST strictly after `t`.
fn next_cutoff(t: DateTime<FixedOffset>) -> DateTime<FixedOffset> {
    let local = t.with_timezone(&ist());
    let six = NaiveTime::from_hms_opt(6, 0, 0).unwrap();
    let mut date = local.date_naive();
    if local.time() >= six {
        date = date.succ_opt().unwrap();
    }
    ist().from_local_datetime(&date.and_time(six)).unwrap()
}

/// One NDJSON connection that keeps its reader (several requests per connection).
struct Ipc {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Ipc {
    fn open(daemon: &Daemon) -> Ipc {
        let stream = daemon.connect_ipc();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Ipc { stream, reader }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the socket");
    }

    fn read_answer(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read an answer");
        assert!(n > 0, "kited closed the connection instead of answering");
        assert!(line.ends_with('\n'), "answer is not a whole line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {line:?}"))
    }

    fn ask_raw(&mut self, bytes: &[u8]) -> Value {
        self.send_raw(bytes);
        self.read_answer()
    }
}

fn assert_bad_request(what: &str, answer: &Value) {
    assert_eq!(answer["ok"], json!(false), "{what}: {answer}");
    assert_eq!(
        answer["error"]["kind"],
        json!("bad_request"),
        "{what}: {answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: the error should say why: {answer}"
    );
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Every entry under `dir` with its mode, recursively.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let is_dir = meta.is_dir();
        out.push((path.clone(), is_dir, meta.permissions().mode() & 0o7777));
        if is_dir {
            walk(&path, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The whole browser flow
// ---------------------------------------------------------------------------------------------

#[test]
fn browser_login_then_get_token_and_status() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // Nothing yet: status exits 0 with state none; get-token exits 4.
    let status = status_json(&daemon);
    assert_eq!(status["state"], json!("none"), "{status}");
    assert_eq!(status["configured"], json!(true), "{status}");
    let line = ctl_fails(&daemon, &["get-token"], 4);
    assert!(line.contains("login"), "{line}");

    // /healthz answers 200.
    let (code, _, body) = daemon.http_get("/healthz");
    assert_eq!(code, 200, "{body}");

    // The login URL: Kite's login with v=3, the api key and a fresh state in redirect_params.
    let url = login_url(&daemon);
    assert!(
        url.starts_with(&format!("{}?", sim.login_url())),
        "login URL should be the configured Kite login URL: {url}"
    );
    assert_eq!(query_param(&url, "v").as_deref(), Some("3"), "{url}");
    assert_eq!(query_param(&url, "api_key"), Some(sim.api_key()), "{url}");
    let state = login_state(&url);
    assert!(
        state.len() >= 16 && state.chars().all(|c| c.is_ascii_alphanumeric()),
        "state should be long and unguessable: {state:?}"
    );
    assert_ne!(
        state,
        login_state(&login_url(&daemon)),
        "every login URL needs a fresh state"
    );
    // The callback URL kited asks to register is its public URL + /auth/callback.
    let answer = daemon.request(&json!({"op": "login_url"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    assert_eq!(
        answer["callback_url"],
        json!(daemon.callback_url()),
        "{answer}"
    );

    // The browser: sim 302 → kited /auth/callback → the page.
    let (status, page) = follow_browser_login(&daemon, &url);
    assert_eq!(status, 200, "{page}\n--- kited log:\n{}", daemon.log());
    assert!(page.contains("Logged in as Kite Tester"), "{page}");
    let issued = sim.valid_access_tokens();
    assert_eq!(
        issued.len(),
        1,
        "the sim should have issued one token: {issued:?}"
    );
    let token = issued[0].clone();
    assert!(
        !page.contains(&token),
        "the callback page must not show the access token: {page}"
    );

    // get-token prints exactly that token.
    assert_eq!(get_token(&daemon), token);
    let json_out = ctl_ok(&daemon, &["get-token", "--json"]);
    let json_token: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(json_token["access_token"], json!(token), "{json_out}");
    assert_eq!(json_token["api_key"], json!(sim.api_key()), "{json_out}");

    // status --json: the bare status object.
    let status = status_json(&daemon);
    assert_eq!(status["state"], json!("valid"), "{status}");
    assert_eq!(status["valid"], json!(true), "{status}");
    assert_eq!(status["needs_refresh"], json!(false), "{status}");
    assert_eq!(status["user_id"], json!("AB1234"), "{status}");
    assert_eq!(status["user_name"], json!("Kite Tester"), "{status}");
    assert_eq!(status["profile"], json!("default"), "{status}");
    assert!(
        status.get("ok").is_none(),
        "--json prints the status itself: {status}"
    );
    let login_time = rfc3339_json(&status["login_time"]);
    let now = chrono::Utc::now();
    assert!(
        (now - login_time.with_timezone(&chrono::Utc))
            .num_seconds()
            .abs()
            < 120,
        "login_time should be about now: {login_time} vs {now}"
    );
    let expires_at_text = status["expires_at"].as_str().unwrap();
    assert!(
        expires_at_text.ends_with("+05:30"),
        "expires_at should be in IST: {expires_at_text}"
    );
    let expires_at = rfc3339_json(&status["expires_at"]);
    assert_eq!(
        expires_at,
        next_cutoff(login_time),
        "expires_at should be the first 06:00 IST after login_time ({login_time})"
    );
    let seconds_left = status["seconds_left"].as_i64().expect("seconds_left");
    assert!(seconds_left > 0 && seconds_left <= 24 * 3600, "{status}");

    // The human status mentions the user and the state.
    let human = ctl_ok(&daemon, &["status"]);
    assert!(
        human.contains("valid") && human.contains("AB1234"),
        "{human}"
    );
    // ping answers with a version.
    let ping = ctl_ok(&daemon, &["ping"]);
    assert!(!ping.trim().is_empty(), "{ping:?}");
}

/// `expires_at` is the first 06:00 IST strictly after Kite's `login_time`, whatever the wall clock
/// says; a login already past its cutoff is stored and reported `expired`, not refused.
#[test]
fn expiry_is_the_next_cutoff_after_login_time() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    for (login_time, expected_login, expected_expiry) in [
        (
            "2026-11-20 05:59:59",
            "2026-11-20T05:59:59+05:30",
            "2026-11-20T06:00:00+05:30",
        ),
        (
            "2026-11-20 06:00:00",
            "2026-11-20T06:00:00+05:30",
            "2026-11-21T06:00:00+05:30",
        ),
        (
            "2026-11-20 06:00:01",
            "2026-11-20T06:00:01+05:30",
            "2026-11-21T06:00:00+05:30",
        ),
        (
            "2025-12-31 23:59:00",
            "2025-12-31T23:59:00+05:30",
            "2026-01-01T06:00:00+05:30",
        ),
    ] {
        sim.set_login_time(Some(login_time.into()));
        ctl_ok(&daemon, &["exchange", &sim.issue_request_token()]);
        let status = status_json(&daemon);
        assert_eq!(
            rfc3339_json(&status["login_time"]),
            DateTime::parse_from_rfc3339(expected_login).unwrap(),
            "{login_time}: {status}"
        );
        assert_eq!(
            status["expires_at"],
            json!(expected_expiry),
            "{login_time}: {status}"
        );
        assert_eq!(status["state"], json!("expired"), "{login_time}: {status}");
        assert_eq!(
            status["needs_refresh"],
            json!(true),
            "{login_time}: {status}"
        );
        ctl_fails(&daemon, &["get-token"], 4);
    }

    // Before the cutoff on the same day (the daemon's clock set to 03:00 IST): valid until 06:00.
    let sim = self::sim();
    let daemon = Daemon::builder(&sim)
        .env("KITED_FAKE_NOW", "2026-11-23T03:00:00+05:30")
        .start();
    sim.set_login_time(Some("2026-11-23 02:59:30".into()));
    let token = headless_exchange(&daemon, &sim.issue_request_token());
    let status = status_json(&daemon);
    assert_eq!(
        status["expires_at"],
        json!("2026-11-23T06:00:00+05:30"),
        "{status}"
    );
    assert_eq!(status["state"], json!("valid"), "{status}");
    let left = status["seconds_left"].as_i64().unwrap();
    assert!((3 * 3600 - 120..=3 * 3600).contains(&left), "{status}");
    assert_eq!(get_token(&daemon), token);
}

// ---------------------------------------------------------------------------------------------
// 2. The exchange on the wire: form POST, X-Kite-Version 3, checksum
// ---------------------------------------------------------------------------------------------

#[test]
fn exchange_is_a_checksummed_form_post() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let url = login_url(&daemon);
    let location = sim_redirect(&url);
    let request_token = query_param(&location, "request_token").expect("request_token");
    let (status, _, page) = daemon.http_get(&path_and_query(&location));
    assert_eq!(status, 200, "{page}");

    let calls = sim.calls_to("POST", "/session/token");
    assert_eq!(calls.len(), 1, "one exchange: {calls:#?}");
    let call = &calls[0];
    assert_eq!(call.status, Some(200), "{call:#?}");
    let content_type = call.content_type.as_deref().unwrap_or("");
    assert!(
        content_type.starts_with("application/x-www-form-urlencoded"),
        "the exchange must be a form body: {call:#?}"
    );
    assert_eq!(call.x_kite_version.as_deref(), Some("3"), "{call:#?}");
    assert_eq!(call.form_param("api_key"), Some(sim.api_key()), "{call:#?}");
    assert_eq!(
        call.form_param("request_token"),
        Some(request_token.clone()),
        "{call:#?}"
    );
    let expected = session_checksum(&sim.api_key(), &request_token, &sim.api_secret());
    assert_eq!(call.form_param("checksum"), Some(expected), "{call:#?}");
    assert!(
        !call.body.contains(&sim.api_secret()),
        "the secret itself must not be sent: {call:#?}"
    );
    assert!(call.query.is_empty(), "nothing in the query: {call:#?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Persistence across SIGTERM and kill -9; SIGINT
// ---------------------------------------------------------------------------------------------

#[test]
fn token_survives_sigterm_restart() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let token = browser_login(&daemon).token;
    assert_eq!(get_token(&daemon), token);

    let status = daemon.terminate();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM should exit 0; log:\n{}",
        daemon.log()
    );
    assert!(
        !daemon.socket_path().exists(),
        "the socket file should be removed on SIGTERM"
    );

    daemon.restart();
    assert_eq!(
        get_token(&daemon),
        token,
        "the token should survive a restart"
    );
    let status = status_json(&daemon);
    assert_eq!(status["state"], json!("valid"), "{status}");
    assert_eq!(status["user_id"], json!("AB1234"), "{status}");
}

#[test]
fn token_survives_kill_9_right_after_exchange() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let request_token = sim.issue_request_token();
    let before = sim.valid_access_tokens();
    // Acknowledged (exit 0) …
    ctl_ok(&daemon, &["exchange", &request_token]);
    // … then killed at once: nothing acknowledged may be lost.
    daemon.kill9();
    let token = the_new_token(&sim, &before);

    daemon.restart();
    assert_eq!(
        get_token(&daemon),
        token,
        "kill -9 lost an acknowledged token"
    );
    assert_eq!(status_json(&daemon)["state"], json!("valid"));
}

#[test]
fn sigint_stops_cleanly() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    daemon.signal(rustix::process::Signal::INT);
    let status = daemon.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "kited did not stop within 5 s of SIGINT; log:\n{}",
            daemon.log()
        )
    });
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(!daemon.socket_path().exists(), "socket file left behind");
}

// ---------------------------------------------------------------------------------------------
// 4. Headless exchange
// ---------------------------------------------------------------------------------------------

#[test]
fn headless_exchange_with_request_token_and_pasted_url() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // A bare request token.
    let first = headless_exchange(&daemon, &sim.issue_request_token());
    assert_eq!(get_token(&daemon), first);

    // The URL a browser ends on when the redirect cannot reach kited (a headless machine):
    // `kitectl login`, log in elsewhere, paste the address bar.
    let url = login_url(&daemon);
    let pasted = sim_redirect(&url);
    assert!(pasted.contains("request_token="), "{pasted}");
    let second = headless_exchange(&daemon, &pasted);
    assert_ne!(first, second);
    assert_eq!(
        get_token(&daemon),
        second,
        "the pasted login's token is served"
    );
    assert_eq!(sim.calls_to("POST", "/session/token").len(), 2);

    // A pasted callback URL without any state (hand-built) works too.
    let bare = format!(
        "{}?action=login&type=login&status=success&request_token={}",
        daemon.callback_url(),
        sim.issue_request_token()
    );
    let third = headless_exchange(&daemon, &bare);
    assert_eq!(get_token(&daemon), third);
    assert_eq!(status_json(&daemon)["state"], json!("valid"));
}

// ---------------------------------------------------------------------------------------------
// 5. Reusing a request token
// ---------------------------------------------------------------------------------------------

#[test]
fn reused_request_token_fails_clearly_and_keeps_old_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let request_token = sim.issue_request_token();
    let token = headless_exchange(&daemon, &request_token);

    let line = ctl_fails(&daemon, &["exchange", &request_token], 1);
    let lower = line.to_lowercase();
    assert!(
        lower.contains("invalid") || lower.contains("expired"),
        "the error should say the token is invalid or expired: {line}"
    );
    assert_eq!(
        sim.calls_to("POST", "/session/token")
            .iter()
            .map(|c| c.status)
            .collect::<Vec<_>>(),
        vec![Some(200), Some(403)]
    );
    assert_eq!(get_token(&daemon), token, "the old token must be kept");
    let status = status_json(&daemon);
    assert_eq!(status["state"], json!("valid"), "{status}");

    // The same through the IPC: kind `kite`.
    let answer = daemon.request(&json!({"op": "exchange", "request_token": request_token}));
    assert_eq!(answer["ok"], json!(false), "{answer}");
    assert_eq!(answer["error"]["kind"], json!("kite"), "{answer}");
    assert_eq!(get_token(&daemon), token);
}

// ---------------------------------------------------------------------------------------------
// 6. Logout
// ---------------------------------------------------------------------------------------------

#[test]
fn logout_invalidates_at_kite_and_forgets_the_token() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let token = browser_login(&daemon).token;

    ctl_ok(&daemon, &["logout"]);
    let deletes = sim.calls_to("DELETE", "/session/token");
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert_eq!(deletes[0].query_param("access_token"), Some(token.clone()));
    assert_eq!(deletes[0].query_param("api_key"), Some(sim.api_key()));
    assert_eq!(deletes[0].x_kite_version.as_deref(), Some("3"));
    assert_eq!(deletes[0].status, Some(200));
    assert!(
        !sim.valid_access_tokens().contains(&token),
        "Kite should no longer accept the token"
    );

    let line = ctl_fails(&daemon, &["get-token"], 4);
    assert!(line.contains("login"), "{line}");
    let status = status_json(&daemon);
    assert_eq!(status["state"], json!("none"), "{status}");
    assert_eq!(status["valid"], json!(false), "{status}");

    // The logout is durable.
    daemon.restart();
    assert_eq!(status_json(&daemon)["state"], json!("none"));
    ctl_fails(&daemon, &["get-token"], 4);
}

// ---------------------------------------------------------------------------------------------
// 7. Daemon not running
// ---------------------------------------------------------------------------------------------

fn kitectl_at(socket: &Path, runtime: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("kitectl"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", runtime)
        .env("XDG_RUNTIME_DIR", runtime)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null());
    cmd.output().expect("run kitectl")
}

#[test]
fn daemon_not_running_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody-here.sock");
    for args in [
        &["get-token"][..],
        &["status"],
        &["status", "--json"],
        &["get-token", "--wait", "5"],
        &["login"],
        &["logout"],
    ] {
        let out = kitectl_at(&missing, dir.path(), args);
        assert_eq!(code(&out), Some(3), "{}", describe(args, &out));
        let line = one_error_line(args, &out);
        assert!(line.contains("not running"), "{line}");
        assert!(out.stdout.is_empty(), "{}", describe(args, &out));
    }

    // A stale socket file with nobody listening: also "not running".
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(is_socket(&stale));
    let out = kitectl_at(&stale, dir.path(), &["get-token"]);
    assert_eq!(code(&out), Some(3), "{}", describe(&["get-token"], &out));
    let line = one_error_line(&["get-token"], &out);
    assert!(line.contains("not running"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// 8. The callback's checks: status, state
// ---------------------------------------------------------------------------------------------

#[test]
fn callback_with_bad_or_missing_state_never_reaches_kite() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let request_token = sim.issue_request_token();

    let wrong = format!(
        "/auth/callback?action=login&type=login&status=success&request_token={request_token}&state=0123456789abcdef0123456789abcdef"
    );
    let missing = format!(
        "/auth/callback?action=login&type=login&status=success&request_token={request_token}"
    );
    let empty = format!("{missing}&state=");
    for path in [&wrong, &missing, &empty] {
        let (status, _, page) = daemon.http_get(path);
        assert!(
            (400..500).contains(&status),
            "{path}: expected a 4xx failure page, got {status}: {page}"
        );
        assert!(!page.contains("Logged in as"), "{path}: {page}");
        assert!(
            page.to_lowercase().contains("fail") || page.to_lowercase().contains("stale"),
            "{path}: the page should say the login failed: {page}"
        );
    }
    assert!(
        sim.calls_to("POST", "/session/token").is_empty(),
        "a callback with a bad state reached Kite: {:#?}",
        sim.calls()
    );
    assert_eq!(status_json(&daemon)["state"], json!("none"));
    // The request token was not used up: a headless exchange still works with it.
    headless_exchange(&daemon, &request_token);
}

#[test]
fn cancelled_login_shows_a_cancelled_page() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    sim.set_cancel(true);
    let url = login_url(&daemon);
    let (status, page) = follow_browser_login(&daemon, &url);
    assert!((400..500).contains(&status), "{status}: {page}");
    assert!(page.to_lowercase().contains("cancelled"), "{page}");
    assert!(!page.contains("Logged in as"), "{page}");
    assert!(sim.calls_to("POST", "/session/token").is_empty());
    assert_eq!(status_json(&daemon)["state"], json!("none"));
    ctl_fails(&daemon, &["get-token"], 4);
}

#[test]
fn a_login_state_works_once() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let url = login_url(&daemon);
    let location = sim_redirect(&url);
    let state = login_state(&url);
    assert_eq!(query_param(&location, "state"), Some(state.clone()));

    let before = sim.valid_access_tokens();
    let (status, _, page) = daemon.http_get(&path_and_query(&location));
    assert_eq!(status, 200, "{page}");
    let token = the_new_token(&sim, &before);

    // The same state again, with another perfectly good request token: refused, not sent on.
    let replay = format!(
        "/auth/callback?action=login&type=login&status=success&request_token={}&state={state}",
        sim.issue_request_token()
    );
    let (status, _, page) = daemon.http_get(&replay);
    assert!(
        (400..500).contains(&status),
        "replayed state: {status}: {page}"
    );
    assert!(!page.contains("Logged in as"), "{page}");
    assert_eq!(sim.calls_to("POST", "/session/token").len(), 1);
    assert_eq!(get_token(&daemon), token);

    // Same URL replayed as-is (same state, same used request token): refused before Kite.
    let (status, _, page) = daemon.http_get(&path_and_query(&location));
    assert!((400..500).contains(&status), "{status}: {page}");
    assert_eq!(sim.calls_to("POST", "/session/token").len(), 1);
}

#[test]
fn callback_where_kite_refuses_shows_a_failure_page_and_keeps_the_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let request_token = sim.issue_request_token();
    let token = headless_exchange(&daemon, &request_token);

    // A fresh, valid state but a request token Kite already consumed.
    let state = login_state(&login_url(&daemon));
    let path = format!(
        "/auth/callback?action=login&type=login&status=success&request_token={request_token}&state={state}"
    );
    let (status, _, page) = daemon.http_get(&path);
    assert!((400..500).contains(&status), "{status}: {page}");
    assert!(!page.contains("Logged in as"), "{page}");
    assert!(
        page.contains("invalid or has expired"),
        "the page should say why Kite refused: {page}"
    );
    assert_eq!(get_token(&daemon), token);
}

// ---------------------------------------------------------------------------------------------
// 9. Garbage on the socket
// ---------------------------------------------------------------------------------------------

#[test]
fn garbage_ipc_gets_bad_request_and_the_daemon_survives() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);

    // Several requests, good and bad, on one connection.
    let mut ipc = Ipc::open(&daemon);
    let ping = ipc.ask_raw(b"{\"op\":\"ping\"}\n");
    assert_eq!(ping["ok"], json!(true), "{ping}");
    assert!(
        ping["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{ping}"
    );
    let cases: [(&str, &[u8]); 8] = [
        ("garbage", b"garbage\n"),
        ("empty object", b"{}\n"),
        ("unknown op", b"{\"op\":\"fly\"}\n"),
        (
            "wait_secs of the wrong type",
            b"{\"op\":\"get_token\",\"wait_secs\":\"x\"}\n",
        ),
        (
            "negative wait_secs",
            b"{\"op\":\"get_token\",\"wait_secs\":-1}\n",
        ),
        ("op not a string", b"{\"op\":7}\n"),
        ("an array", b"[1,2,3]\n"),
        ("invalid UTF-8", b"{\"op\":\"pi\xff\xfeng\"}\n"),
    ];
    for (what, bytes) in cases {
        let answer = ipc.ask_raw(bytes);
        assert_bad_request(what, &answer);
    }
    // The connection still serves.
    let status = ipc.ask_raw(b"{\"op\":\"status\"}\n");
    assert_eq!(status["ok"], json!(true), "{status}");
    assert_eq!(status["status"]["state"], json!("none"), "{status}");
    // Two requests in one write get two answers, in order.
    ipc.send_raw(b"{\"op\":\"ping\"}\n{\"op\":\"nope\"}\n");
    assert_eq!(ipc.read_answer()["ok"], json!(true));
    assert_bad_request("second of a pair", &ipc.read_answer());

    // A 70 KiB line: an error answer (the connection may close afterwards).
    let mut long = Ipc::open(&daemon);
    let mut line = b"{\"op\":\"ping\",\"pad\":\"".to_vec();
    line.resize(70 * 1024, b'a');
    line.extend_from_slice(b"\"}\n");
    let answer = long.ask_raw(&line);
    assert_bad_request("70 KiB line", &answer);
    drop(long);

    // A slow client holding half a line does not block anyone.
    let mut slow = Ipc::open(&daemon);
    slow.send_raw(b"{\"op\":");

    // A fresh connection still works, and so does kitectl.
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], json!(true), "{ping}");
    assert_eq!(status_json(&daemon)["state"], json!("none"));
    // The slow client can finish its request afterwards.
    let answer = slow.ask_raw(b"\"ping\"}\n");
    assert_eq!(answer["ok"], json!(true), "{answer}");
    assert!(daemon.is_running(), "kited died; log:\n{}", daemon.log());
}

#[test]
fn a_client_that_hangs_up_mid_request_does_not_hurt() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    for bytes in [&b"{\"op\":\"pi"[..], b"", &[0xff; 100 * 1024][..]] {
        let mut stream = daemon.connect_ipc();
        let _ = stream.write_all(bytes);
        drop(stream);
    }
    // A waiting get_token whose client disappears.
    {
        let mut ipc = Ipc::open(&daemon);
        ipc.send_raw(b"{\"op\":\"get_token\",\"wait_secs\":30}\n");
    }
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], json!(true), "{ping}");
    assert!(daemon.is_running());
    // Over-long invalid UTF-8: an error answer or a close, never an ok.
    let mut stream = daemon.connect_ipc();
    let mut bytes = vec![0xffu8; 70 * 1024];
    bytes.push(b'\n');
    stream.write_all(&bytes).unwrap();
    let mut answer = String::new();
    let _ = BufReader::new(&mut stream).read_line(&mut answer);
    if !answer.is_empty() {
        let value: Value = serde_json::from_str(&answer).unwrap();
        assert_bad_request("70 KiB of invalid UTF-8", &value);
    }
    drop(stream);
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], json!(true), "{ping}");
}

// ---------------------------------------------------------------------------------------------
// 10. Files, modes, stale and live sockets, one daemon per state dir and socket
// ---------------------------------------------------------------------------------------------

#[test]
fn socket_and_state_files_are_private_whatever_the_umask() {
    let sim = sim();
    let outer = tempfile::tempdir().unwrap();
    let socket = outer.path().join("fresh").join("sub").join("kited.sock");
    // Start kited under a permissive umask: it must make its files private by itself.
    let daemon = Daemon::builder(&sim).socket(&socket).umask(0o000).start();

    assert!(is_socket(&socket), "{} is not a socket", socket.display());
    assert_eq!(mode(&socket), 0o600, "socket mode");
    assert_eq!(
        mode(socket.parent().unwrap()),
        0o700,
        "socket directory mode"
    );
    assert_eq!(
        mode(&outer.path().join("fresh")),
        0o700,
        "created parent mode"
    );

    // Write a token so sled has written everything it writes.
    browser_login(&daemon);
    let state = daemon.state_dir();
    assert_eq!(mode(state), 0o700, "state dir mode");
    let mut entries = Vec::new();
    walk(state, &mut entries);
    assert!(
        entries.len() > 1,
        "the state dir should hold the store: {entries:?}"
    );
    for (path, is_dir, m) in &entries {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} has mode {m:o}", path.display());
    }
}

#[test]
fn stale_socket_from_a_crash_is_replaced() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let token = browser_login(&daemon).token;
    daemon.kill9();
    assert!(
        is_socket(daemon.socket_path()),
        "kill -9 should leave the socket file behind (the test needs a stale one)"
    );
    // A hard link keeps the stale socket's inode alive, so a new socket cannot reuse its number.
    let held = daemon.dir().join("stale-socket-link");
    std::fs::hard_link(daemon.socket_path(), &held).unwrap();
    let old_inode = inode(&held);
    // kitectl says not running for a stale socket.
    let line = ctl_fails(&daemon, &["get-token"], 3);
    assert!(line.contains("not running"), "{line}");

    daemon.restart();
    assert!(is_socket(daemon.socket_path()));
    assert_ne!(
        inode(daemon.socket_path()),
        old_inode,
        "a new socket was bound"
    );
    assert_eq!(mode(daemon.socket_path()), 0o600);
    assert_eq!(get_token(&daemon), token);
}

#[test]
fn second_daemon_on_the_same_state_dir_refuses() {
    let sim = sim();
    let mut first = Daemon::start(&sim);
    let token = browser_login(&first).token;

    let mut second = Daemon::builder(&sim)
        .state_dir(first.state_dir())
        .keep_redirect()
        .spawn();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "a second kited on the same state dir kept running; log:\n{}",
                second.log()
            )
        });
    assert!(!status.success(), "second kited should fail: {status}");
    let log = second.log();
    assert!(
        log.contains("another kited is already running for profile default"),
        "log:\n{log}"
    );
    let lines = daemon_lines(&log);
    assert_eq!(lines.len(), 1, "one stderr line expected:\n{log}");

    // The first one is untouched.
    assert!(first.is_running());
    assert_eq!(get_token(&first), token);
}

#[test]
fn second_daemon_on_the_same_socket_does_not_steal_it() {
    let sim = sim();
    let mut first = Daemon::start(&sim);
    let token = browser_login(&first).token;
    let inode_before = inode(first.socket_path());

    let mut second = Daemon::builder(&sim)
        .socket(first.socket_path())
        .keep_redirect()
        .spawn();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "a second kited on a live socket kept running; log:\n{}",
                second.log()
            )
        });
    assert!(!status.success(), "second kited should fail: {status}");
    let log = second.log();
    assert!(
        log.contains("another kited") || log.contains("already"),
        "the refusal should say another kited listens there; log:\n{log}"
    );

    assert!(first.is_running());
    assert!(
        is_socket(first.socket_path()),
        "the live socket was removed"
    );
    assert_eq!(
        inode(first.socket_path()),
        inode_before,
        "the live socket was replaced"
    );
    assert_eq!(get_token(&first), token);
    // And the first still serves HTTP (the second never bound over it).
    assert_eq!(first.http_get("/healthz").0, 200);
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn peers_of_another_uid_are_refused() {
    assert!(
        rustix::process::geteuid().is_root(),
        "acts as a second uid: needs root"
    );
    let sim = sim();
    let daemon = Daemon::start(&sim);
    headless_exchange(&daemon, &sim.issue_request_token());
    // Open the file permissions so only the daemon's own uid check stands in the way: the
    // socket, and the directories from it up to the daemon's temp dir (nothing above that).
    std::fs::set_permissions(daemon.socket_path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for dir in daemon.socket_path().ancestors().skip(1) {
        if !dir.starts_with(daemon.dir()) {
            assert!(
                mode(dir) & 0o001 != 0,
                "{} is not searchable by other users: the second uid cannot reach the socket",
                dir.display()
            );
            continue;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode(dir) | 0o711)).unwrap();
    }
    use std::os::unix::process::CommandExt;
    let out = daemon
        .ctl_command(&["get-token"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run kitectl as nobody");
    assert_ne!(code(&out), Some(0), "{}", describe(&["get-token"], &out));
    assert!(
        out.stdout.is_empty(),
        "another user got the token: {}",
        describe(&["get-token"], &out)
    );
    let line = one_error_line(&["get-token"], &out);
    assert!(
        !line.contains("permission denied"),
        "the file modes, not kited's uid check, refused the client: {line}"
    );
    // The person must learn why: kited refused them as another user. Not "lost the
    // connection: Broken pipe" (exit 3, as if kited were down), which is what they see when
    // kited hangs up before kitectl has written its request.
    assert!(
        line.contains("user"),
        "the refusal should say kited serves only its own user: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// 11. Not configured
// ---------------------------------------------------------------------------------------------

#[test]
fn without_api_key_the_daemon_runs_and_says_not_configured() {
    let sim = sim();
    let daemon = Daemon::builder(&sim).no_api_key().start();

    let status = status_json(&daemon);
    assert_eq!(status["configured"], json!(false), "{status}");
    assert_eq!(status["state"], json!("none"), "{status}");
    ctl_ok(&daemon, &["status"]);

    let line = ctl_fails(&daemon, &["login"], 1);
    assert!(line.contains("KITE_API_KEY"), "{line}");
    let line = ctl_fails(&daemon, &["exchange", &sim.issue_request_token()], 1);
    assert!(line.contains("KITE_API_KEY"), "{line}");

    // get-token: not_configured, which kitectl maps to 1 (4 would also honour "no valid token").
    let out = daemon.ctl(&["get-token"]);
    assert!(
        matches!(code(&out), Some(1) | Some(4)),
        "{}",
        describe(&["get-token"], &out)
    );
    let line = one_error_line(&["get-token"], &out);
    assert!(line.contains("KITE_API_KEY"), "{line}");

    for op in ["login_url", "exchange"] {
        let mut request = json!({"op": op});
        if op == "exchange" {
            request["request_token"] = json!("abc123");
        }
        let answer = daemon.request(&request);
        assert_eq!(
            answer["error"]["kind"],
            json!("not_configured"),
            "{op}: {answer}"
        );
    }
    // The callback cannot reach Kite either.
    let path = format!(
        "/auth/callback?status=success&request_token={}&state=abc",
        sim.issue_request_token()
    );
    let (status, _, page) = daemon.http_get(&path);
    assert!(status >= 400, "{status}: {page}");
    assert!(
        sim.calls().is_empty(),
        "nothing should reach Kite: {:#?}",
        sim.calls()
    );
}

#[test]
fn without_api_secret_the_daemon_says_not_configured() {
    let sim = sim();
    let daemon = Daemon::builder(&sim).no_api_secret().start();
    let status = status_json(&daemon);
    assert_eq!(status["configured"], json!(false), "{status}");
    assert_eq!(status["state"], json!("none"), "{status}");
    let line = ctl_fails(&daemon, &["login"], 1);
    assert!(line.contains("KITE_API_SECRET"), "{line}");
    assert!(sim.calls().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 12. Configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn broken_config_file_stops_kited_with_one_line_naming_it() {
    let sim = sim();
    for toml in [
        "this is [not toml\n",
        "[kite]\napi_key = 5\n",
        "[expiry]\ncutoff = \"25:99\"\n",
    ] {
        let mut daemon = Daemon::builder(&sim).config_toml(toml).spawn();
        let status = daemon
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("kited kept running with a broken config {toml:?}"));
        assert!(!status.success(), "{toml:?}: {status}");
        let log = daemon.log();
        let lines = daemon_lines(&log);
        assert_eq!(lines.len(), 1, "{toml:?}: expected one line, got:\n{log}");
        let config = daemon.config_path().unwrap().display().to_string();
        if toml.contains("cutoff") {
            // A bad value may be named by its key rather than the file.
            assert!(
                lines[0].contains(&config) || lines[0].contains("expiry.cutoff"),
                "{toml:?}: {}",
                lines[0]
            );
        } else {
            assert!(
                lines[0].contains(&config),
                "{toml:?}: the line should name {config}: {}",
                lines[0]
            );
        }
        assert!(
            !daemon.socket_path().exists(),
            "{toml:?}: no socket should be left"
        );
    }
}

#[test]
fn login_as_another_user_than_configured_is_refused() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[kite]\nuser_id = \"ZZ9999\"\n")
        .start();

    // The configured user logs in.
    sim.set_user("ZZ9999", "Zed Tester");
    let before = sim.valid_access_tokens();
    ctl_ok(&daemon, &["exchange", &sim.issue_request_token()]);
    let token = the_new_token(&sim, &before);
    assert_eq!(status_json(&daemon)["user_id"], json!("ZZ9999"));

    // Someone else logs in: refused, old token kept.
    sim.set_user("AB1234", "Kite Tester");
    let line = ctl_fails(&daemon, &["exchange", &sim.issue_request_token()], 1);
    assert!(
        line.contains("AB1234"),
        "the message should name the user: {line}"
    );
    assert_eq!(get_token(&daemon), token);
    let status = status_json(&daemon);
    assert_eq!(status["user_id"], json!("ZZ9999"), "{status}");
    assert_eq!(status["state"], json!("valid"), "{status}");

    // The same through the browser.
    let url = login_url(&daemon);
    let (status, page) = follow_browser_login(&daemon, &url);
    assert!((400..500).contains(&status), "{status}: {page}");
    assert!(page.contains("AB1234"), "{page}");
    assert!(!page.contains("Logged in as"), "{page}");
    assert_eq!(get_token(&daemon), token);
}

// ---------------------------------------------------------------------------------------------
// 13. Secrets stay secret
// ---------------------------------------------------------------------------------------------

#[test]
fn secret_and_token_never_appear_in_logs_errors_or_pages() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let secret = sim.api_secret();
    let mut seen: Vec<(String, String)> = Vec::new();
    let run = |seen: &mut Vec<(String, String)>, args: &[&str], include_stdout: bool| -> Output {
        let out = daemon.ctl(args);
        seen.push((format!("stderr of kitectl {args:?}"), stderr(&out)));
        if include_stdout {
            seen.push((format!("stdout of kitectl {args:?}"), stdout(&out)));
        }
        out
    };

    run(&mut seen, &["status"], true);
    run(&mut seen, &["get-token"], true);
    let out = run(&mut seen, &["login"], true);
    let url = stdout(&out).trim().to_string();
    let (status, page) = follow_browser_login(&daemon, &url);
    assert_eq!(status, 200, "{page}");
    seen.push(("callback page".into(), page));
    let token = sim.valid_access_tokens().pop().expect("a token");

    let got = run(&mut seen, &["get-token"], false);
    assert_eq!(stdout(&got).trim(), token);
    run(&mut seen, &["status"], true);
    run(&mut seen, &["status", "--json"], true);
    run(&mut seen, &["get-token", "--json"], false);
    run(&mut seen, &["env"], false);
    // An error path: a reused request token, and a bad callback.
    let request_token = sim.issue_request_token();
    run(&mut seen, &["exchange", &request_token], false);
    run(&mut seen, &["exchange", &request_token], true);
    for path in [
        "/",
        "/healthz",
        "/api/token/status",
        "/api/token/callback-url",
        "/api/token/refresh-info",
        "/static/kite-token-flow.js",
        "/auth/callback?status=success&request_token=abc&state=nope",
        "/auth/callback?status=cancelled",
    ] {
        let (_, headers, body) = daemon.http_get(path);
        seen.push((format!("GET {path}"), body));
        seen.push((format!("headers of GET {path}"), format!("{headers:?}")));
    }
    let token2 = get_token(&daemon);
    run(&mut seen, &["logout"], true);
    run(&mut seen, &["get-token"], true);
    run(&mut seen, &["status", "--json"], true);

    seen.push(("kited log".into(), daemon.log()));
    for (what, text) in &seen {
        assert!(
            !text.contains(&secret),
            "{what} contains the api secret:\n{text}"
        );
        for t in [&token, &token2] {
            assert!(
                !text.contains(t.as_str()),
                "{what} contains an access token:\n{text}"
            );
        }
    }
    // The socket answers carry no secret either.
    let status = daemon.request(&json!({"op": "status"}));
    assert!(!status.to_string().contains(&secret), "{status}");
}

// ---------------------------------------------------------------------------------------------
// 14. get-token --wait
// ---------------------------------------------------------------------------------------------

/// Whether process `pid` has a socket open (kitectl connected, or connecting).
fn has_socket_fd(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read_link(e.path())
            .map(|target| target.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false)
    })
}

#[test]
fn get_token_wait_returns_as_soon_as_someone_logs_in() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // The wait is bounded: with nobody logging in, exit 4 after about the wait.
    let started = Instant::now();
    ctl_fails(&daemon, &["get-token", "--wait", "1"], 4);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "get-token --wait 1 took {took:?}"
    );

    let mut child = daemon
        .ctl_command(&["get-token", "--wait", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kitectl");
    let pid = child.id();
    eventually(Duration::from_secs(5), "kitectl to connect", || {
        has_socket_fd(pid)
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "get-token --wait gave up before anyone logged in"
    );

    let token = browser_login(&daemon).token;
    let status = wait_child(
        &mut child,
        Duration::from_secs(5),
        "get-token --wait after the login",
    );
    let (out, err) = read_outputs(&mut child);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(out, format!("{token}\n"), "stderr: {err}");
}

// ---------------------------------------------------------------------------------------------
// 15. exec and env
// ---------------------------------------------------------------------------------------------

#[test]
fn exec_and_env_hand_the_token_to_programs() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // No token yet: exec does not run the command and exits 4.
    let marker = daemon.dir().join("ran");
    let script = format!("touch '{}'", marker.display());
    ctl_fails(&daemon, &["exec", "--", "sh", "-c", &script], 4);
    assert!(!marker.exists(), "exec ran the command without a token");

    let token = headless_exchange(&daemon, &sim.issue_request_token());
    let key = sim.api_key();

    // The exit code passes through; 7 only if both variables are right.
    let script = format!(
        "test \"$KITE_ACCESS_TOKEN\" = {token} && test \"$KITE_API_KEY\" = {key} && exit 7"
    );
    let out = daemon.ctl(&["exec", "--", "sh", "-c", &script]);
    assert_eq!(code(&out), Some(7), "{}", describe(&["exec"], &out));
    // And a command's own failure code too.
    let out = daemon.ctl(&["exec", "--", "sh", "-c", "exit 42"]);
    assert_eq!(code(&out), Some(42), "{}", describe(&["exec"], &out));
    // The child does not inherit the daemon's secret (kitectl never had it) but gets the args.
    let out = daemon.ctl(&[
        "exec",
        "--",
        "sh",
        "-c",
        "printf '%s|' \"$@\"",
        "sh",
        "a b",
        "--json",
    ]);
    assert_eq!(stdout(&out), "a b|--json|");

    // env, evaluated by a shell.
    let env_out = ctl_ok(&daemon, &["env"]);
    assert!(env_out.contains("export KITE_ACCESS_TOKEN="), "{env_out}");
    assert!(env_out.contains("export KITE_API_KEY="), "{env_out}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"eval "$("$1" --socket "$2" env)" || exit 99; printf %s "$KITE_ACCESS_TOKEN"; printf '|%s' "$KITE_API_KEY""#)
        .arg("sh")
        .arg(bin("kitectl"))
        .arg(daemon.socket_path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", daemon.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", describe(&["env (eval)"], &out));
    assert_eq!(stdout(&out), format!("{token}|{key}"));
}

// ---------------------------------------------------------------------------------------------
// 16. The shutdown op
// ---------------------------------------------------------------------------------------------

#[test]
fn shutdown_op_exits_cleanly() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let answer = daemon.request(&json!({"op": "shutdown"}));
    assert_eq!(answer, json!({"ok": true}));
    let status = daemon.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "kited did not exit within 5 s of shutdown; log:\n{}",
            daemon.log()
        )
    });
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(!daemon.socket_path().exists(), "socket file left behind");
    // kitectl now says not running.
    let line = ctl_fails(&daemon, &["status"], 3);
    assert!(line.contains("not running"), "{line}");
}
