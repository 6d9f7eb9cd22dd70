//! Events around a login: another user's login refused, the refresh token, postbacks, a waiting get-token woken.

use std::fs;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kite_proto::checksum::{postback_checksum, refresh_checksum};
use kite_proto::TokenState;
use kite_tests::harness::{eventually, Daemon};
use serde_json::{json, Value};

use crate::helper::events::{before_cutoff, logout, Watch, LOGIN_TIME, WAIT};
use crate::helper::{get_token, login_headless, sim, status};

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

// 10. desktop notifications on a private D-Bus session bus

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
