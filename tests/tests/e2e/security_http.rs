//! Attacks by another local user over HTTP (exchange, whose account, the callback) and the callback URL kept off the command line.

use std::io::Write;
use std::process::Stdio;

use kite_tests::http_client::{self, HttpReply};
use kite_tests::Daemon;
use serde_json::{json, Value};

use crate::helper::uid::{as_user, finish, require_root, ATTACKER};
use crate::helper::{exchange_calls, sim, text};

/// An HTTP request to `daemon` made by `uid` (a thread running as that user).
fn http_as(uid: u32, daemon: &Daemon, method: &str, path: &str, body: Option<Value>) -> HttpReply {
    let url = format!("{}{path}", daemon.base_url());
    let method = method.to_string();
    as_user(uid, move || {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        http_client::request(&method, &url, headers, body.as_bytes()).expect("HTTP request")
    })
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn another_user_cannot_exchange_a_request_token_over_http() {
    require_root();
    let sim = sim();
    let daemon = Daemon::start(&sim);
    // The attacker read the victim's request token (from `ps`, say) and races to post it.
    let request_token = sim.issue_request_token();
    let reply = http_as(
        ATTACKER,
        &daemon,
        "POST",
        "/api/token/generate-access-token",
        Some(json!({"request_token": request_token})),
    );
    assert_eq!(reply.status, 403, "{}", reply.text());
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.starts_with("Failed to generate access token:") && detail.contains("only the user"),
        "{detail}"
    );
    assert!(!reply.text().contains("access_token\""), "{}", reply.text());
    assert_eq!(
        exchange_calls(&sim),
        0,
        "the request token was spent for the attacker"
    );
    // The victim's own exchange still works with the same request token.
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": request_token}),
    );
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sim.valid_access_tokens(),
        vec![token["access_token"].as_str().unwrap().to_string()]
    );
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn another_user_sees_the_status_without_whose_account_it_is() {
    require_root();
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": sim.issue_request_token()}),
    );
    assert_eq!(status, 200, "{body}");
    let theirs = http_as(ATTACKER, &daemon, "GET", "/api/token/status", None);
    assert_eq!(theirs.status, 200, "{}", theirs.text());
    let theirs = theirs.json();
    assert_eq!(theirs["state"], json!("valid"), "{theirs}");
    for hidden in ["user_id", "user_name", "api_key"] {
        assert!(
            theirs[hidden].is_null(),
            "{hidden} shown to another user: {theirs}"
        );
    }
    let (_, _, mine) = daemon.http_get("/api/token/status");
    let mine: Value = serde_json::from_str(&mine).unwrap();
    assert_eq!(mine["user_id"], json!("AB1234"), "{mine}");
    assert_eq!(mine["api_key"], json!(sim.api_key()), "{mine}");
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn the_browser_callback_stays_open_to_other_users() {
    require_root();
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let login = daemon.ctl(&["login"]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    let login_url = text(&login.stdout).trim().to_string();
    // A reverse proxy (another uid) carries Kite's redirect to kited.
    let location = http_client::get(&login_url)
        .unwrap()
        .header("location")
        .expect("the sim redirects")
        .to_string();
    let path = location.trim_start_matches(&daemon.base_url()).to_string();
    let reply = http_as(ATTACKER, &daemon, "GET", &path, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains("Logged in as Kite Tester"),
        "{}",
        reply.text()
    );
    assert_eq!(sim.valid_access_tokens().len(), 1);
}

#[test]
fn the_json_exchange_route_can_be_turned_off() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[http]\nexchange_api = false\n")
        .start();
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": sim.issue_request_token()}),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("http.exchange_api = false"), "{body}");
    assert_eq!(exchange_calls(&sim), 0);
    // The browser login still works.
    let login = daemon.ctl(&["login"]);
    let (status, page) = kite_tests::follow_browser_login(&daemon, text(&login.stdout).trim());
    assert_eq!(status, 200, "{page}");
}

#[test]
fn kitectl_exchange_reads_the_url_from_stdin_not_the_command_line() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let run = |args: &[&str], input: &str| {
        let mut child = daemon
            .ctl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        finish(child)
    };
    for args in [&["exchange"][..], &["exchange", "-"]] {
        let url = format!(
            "{}?action=login&type=login&status=success&request_token={}\n",
            daemon.callback_url(),
            sim.issue_request_token()
        );
        let out = run(args, &url);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("Logged in as Kite Tester"),
            "{}",
            text(&out.stdout)
        );
        assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    }
    assert_eq!(exchange_calls(&sim), 2);
    // Nothing piped in: one clear line, nothing sent to Kite.
    let out = run(&["exchange"], "\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nothing to exchange"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(exchange_calls(&sim), 2);
    // The argument form still works, and says why it is the less safe one.
    let out = daemon.ctl(&["exchange", &sim.issue_request_token()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("can be read by other local users"),
        "{}",
        text(&out.stderr)
    );
}

// 3. A broken log pipe never kills the daemon
