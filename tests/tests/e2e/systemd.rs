//! kited under systemd: sd_notify readiness, status lines, watchdog, and clean stops that answer what is in flight.

use std::time::{Duration, Instant};

use kite_tests::harness::eventually;
use kite_tests::Daemon;
use rustix::process::Signal;
use serde_json::{json, Value};

use crate::helper::systemd::{ok, NotifySocket, NOTIFY_DEADLINE, QUIET};
use crate::helper::{browser_login, sim, text};

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
