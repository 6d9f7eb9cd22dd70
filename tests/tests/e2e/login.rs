//! Logging in through the browser: the login URL, the callback page and its state, the token's expiry, logout.

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone};
use kite_tests::{follow_browser_login, Daemon};

use crate::helper::ctl::{
    ctl_exchange, ctl_fails, ctl_get_token, ctl_login_url, ctl_ok, ctl_status_json,
};
use crate::helper::kite_login::{path_and_query, sim_redirect};
use crate::helper::{browser_login, login_state, query_param, rfc3339_json, sim, the_new_token};
use serde_json::{json, Value};

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

#[test]
fn browser_login_then_get_token_and_status() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // Nothing yet: status exits 0 with state none; get-token exits 4.
    let status = ctl_status_json(&daemon);
    assert_eq!(status["state"], json!("none"), "{status}");
    assert_eq!(status["configured"], json!(true), "{status}");
    let line = ctl_fails(&daemon, &["get-token"], 4);
    assert!(line.contains("login"), "{line}");

    // /healthz answers 200.
    let (code, _, body) = daemon.http_get("/healthz");
    assert_eq!(code, 200, "{body}");

    // The login URL: Kite's login with v=3, the api key and a fresh state in redirect_params.
    let url = ctl_login_url(&daemon);
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
        login_state(&ctl_login_url(&daemon)),
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
    assert_eq!(ctl_get_token(&daemon), token);
    let json_out = ctl_ok(&daemon, &["get-token", "--json"]);
    let json_token: Value = serde_json::from_str(&json_out).unwrap();
    assert_eq!(json_token["access_token"], json!(token), "{json_out}");
    assert_eq!(json_token["api_key"], json!(sim.api_key()), "{json_out}");

    // status --json: the bare status object.
    let status = ctl_status_json(&daemon);
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
        let status = ctl_status_json(&daemon);
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
    let token = ctl_exchange(&daemon, &sim.issue_request_token());
    let status = ctl_status_json(&daemon);
    assert_eq!(
        status["expires_at"],
        json!("2026-11-23T06:00:00+05:30"),
        "{status}"
    );
    assert_eq!(status["state"], json!("valid"), "{status}");
    let left = status["seconds_left"].as_i64().unwrap();
    assert!((3 * 3600 - 120..=3 * 3600).contains(&left), "{status}");
    assert_eq!(ctl_get_token(&daemon), token);
}

// 2. The exchange on the wire: form POST, X-Kite-Version 3, checksum

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
    let status = ctl_status_json(&daemon);
    assert_eq!(status["state"], json!("none"), "{status}");
    assert_eq!(status["valid"], json!(false), "{status}");

    // The logout is durable.
    daemon.restart();
    assert_eq!(ctl_status_json(&daemon)["state"], json!("none"));
    ctl_fails(&daemon, &["get-token"], 4);
}

// 7. Daemon not running

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
    assert_eq!(ctl_status_json(&daemon)["state"], json!("none"));
    // The request token was not used up: a headless exchange still works with it.
    ctl_exchange(&daemon, &request_token);
}

#[test]
fn cancelled_login_shows_a_cancelled_page() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    sim.set_cancel(true);
    let url = ctl_login_url(&daemon);
    let (status, page) = follow_browser_login(&daemon, &url);
    assert!((400..500).contains(&status), "{status}: {page}");
    assert!(page.to_lowercase().contains("cancelled"), "{page}");
    assert!(!page.contains("Logged in as"), "{page}");
    assert!(sim.calls_to("POST", "/session/token").is_empty());
    assert_eq!(ctl_status_json(&daemon)["state"], json!("none"));
    ctl_fails(&daemon, &["get-token"], 4);
}

#[test]
fn a_login_state_works_once() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let url = ctl_login_url(&daemon);
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
    assert_eq!(ctl_get_token(&daemon), token);

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
    let token = ctl_exchange(&daemon, &request_token);

    // A fresh, valid state but a request token Kite already consumed.
    let state = login_state(&ctl_login_url(&daemon));
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
    assert_eq!(ctl_get_token(&daemon), token);
}

// 9. Garbage on the socket

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
    assert_eq!(ctl_status_json(&daemon)["user_id"], json!("ZZ9999"));

    // Someone else logs in: refused, old token kept.
    sim.set_user("AB1234", "Kite Tester");
    let line = ctl_fails(&daemon, &["exchange", &sim.issue_request_token()], 1);
    assert!(
        line.contains("AB1234"),
        "the message should name the user: {line}"
    );
    assert_eq!(ctl_get_token(&daemon), token);
    let status = ctl_status_json(&daemon);
    assert_eq!(status["user_id"], json!("ZZ9999"), "{status}");
    assert_eq!(status["state"], json!("valid"), "{status}");

    // The same through the browser.
    let url = ctl_login_url(&daemon);
    let (status, page) = follow_browser_login(&daemon, &url);
    assert!((400..500).contains(&status), "{status}: {page}");
    assert!(page.contains("AB1234"), "{page}");
    assert!(!page.contains("Logged in as"), "{page}");
    assert_eq!(ctl_get_token(&daemon), token);
}

// 13. Secrets stay secret
