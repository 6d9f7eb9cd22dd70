//! Logging in without a browser: `kitectl exchange` with a request token or a pasted callback URL, and the form post kited makes to Kite.

use kite_proto::checksum::session_checksum;
use kite_tests::Daemon;

use crate::helper::ctl::{ctl_exchange, ctl_fails, ctl_get_token, ctl_login_url, ctl_status_json};
use crate::helper::kite_login::{path_and_query, sim_redirect};
use crate::helper::{query_param, sim};
use serde_json::json;

#[test]
fn exchange_is_a_checksummed_form_post() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let url = ctl_login_url(&daemon);
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

// 3. Persistence across SIGTERM and kill -9; SIGINT

#[test]
fn headless_exchange_with_request_token_and_pasted_url() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // A bare request token.
    let first = ctl_exchange(&daemon, &sim.issue_request_token());
    assert_eq!(ctl_get_token(&daemon), first);

    // The URL a browser ends on when the redirect cannot reach kited (a headless machine):
    // `kitectl login`, log in elsewhere, paste the address bar.
    let url = ctl_login_url(&daemon);
    let pasted = sim_redirect(&url);
    assert!(pasted.contains("request_token="), "{pasted}");
    let second = ctl_exchange(&daemon, &pasted);
    assert_ne!(first, second);
    assert_eq!(
        ctl_get_token(&daemon),
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
    let third = ctl_exchange(&daemon, &bare);
    assert_eq!(ctl_get_token(&daemon), third);
    assert_eq!(ctl_status_json(&daemon)["state"], json!("valid"));
}

// 5. Reusing a request token

#[test]
fn reused_request_token_fails_clearly_and_keeps_old_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let request_token = sim.issue_request_token();
    let token = ctl_exchange(&daemon, &request_token);

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
    assert_eq!(ctl_get_token(&daemon), token, "the old token must be kept");
    let status = ctl_status_json(&daemon);
    assert_eq!(status["state"], json!("valid"), "{status}");

    // The same through the IPC: kind `kite`.
    let answer = daemon.request(&json!({"op": "exchange", "request_token": request_token}));
    assert_eq!(answer["ok"], json!(false), "{answer}");
    assert_eq!(answer["error"]["kind"], json!("kite"), "{answer}");
    assert_eq!(ctl_get_token(&daemon), token);
}

// 6. Logout
