//! The token across restarts and crashes, and clean stops on SIGINT and the shutdown op.

use std::time::Duration;

use kite_tests::Daemon;

use crate::helper::ctl::{ctl_fails, ctl_get_token, ctl_ok, ctl_status_json};
use crate::helper::{browser_login, sim, the_new_token};
use serde_json::json;

#[test]
fn token_survives_sigterm_restart() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let token = browser_login(&daemon).token;
    assert_eq!(ctl_get_token(&daemon), token);

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
        ctl_get_token(&daemon),
        token,
        "the token should survive a restart"
    );
    let status = ctl_status_json(&daemon);
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
        ctl_get_token(&daemon),
        token,
        "kill -9 lost an acknowledged token"
    );
    assert_eq!(ctl_status_json(&daemon)["state"], json!("valid"));
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

// 4. Headless exchange

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
