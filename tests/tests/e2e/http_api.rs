//! The HTTP API over a real server: status before and after a login, the callback URL, refresh-info's single-use logins, no route leaks the token. Status codes, details and headers of each route are unit tests of the routes.

use chrono::Timelike;
use kite_tests::follow_browser_login;
use serde_json::{json, Value};

use crate::helper::http::header;
use crate::helper::{
    browser_login, ctl_token, exchange_calls, fresh_states, get, get_json, rfc3339_json, sim,
    web_daemon, web_daemon_with_origin,
};

#[test]
fn status_shape_before_and_after_login() {
    let sim = sim();
    let d = web_daemon(&sim);
    let reply = get(&d, "/api/token/status");
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let before = reply.json();
    for key in [
        "valid",
        "needs_refresh",
        "expires_at",
        "seconds_left",
        "user_id",
        "user_name",
        "login_time",
        "state",
    ] {
        assert!(before.get(key).is_some(), "status lacks {key}: {before}");
    }
    assert_eq!(before["state"], "none");
    assert_eq!(before["valid"], false);
    assert_eq!(before["needs_refresh"], true);
    assert_eq!(before["configured"], true);
    for key in [
        "expires_at",
        "seconds_left",
        "user_id",
        "user_name",
        "login_time",
    ] {
        assert!(before[key].is_null(), "{key} before any login: {before}");
    }

    browser_login(&d);
    let after = get_json(&d, "/api/token/status");
    let state = after["state"].as_str().unwrap();
    assert!(fresh_states().contains(&state), "{after}");
    assert_eq!(after["valid"], true);
    assert_eq!(after["needs_refresh"], state != "valid");
    assert_eq!(after["user_id"], "AB1234");
    assert_eq!(after["user_name"], "Kite Tester");
    let login_time = rfc3339_json(&after["login_time"]);
    let expires_at = rfc3339_json(&after["expires_at"]);
    assert!(
        after["expires_at"].as_str().unwrap().ends_with("+05:30"),
        "expires_at is given in IST: {after}"
    );
    assert_eq!(
        (expires_at.hour(), expires_at.minute(), expires_at.second()),
        (6, 0, 0),
        "{after}"
    );
    assert!(login_time < expires_at);
    assert!(expires_at - login_time <= chrono::Duration::hours(24));
    let left = after["seconds_left"].as_i64().expect("seconds_left");
    let expected = (expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!(
        left > 0 && (left - expected).abs() <= 5,
        "seconds_left {left}, expected ≈{expected}"
    );
    assert!(after.get("access_token").is_none(), "{after}");
}

#[test]
fn callback_url_route() {
    let sim = sim();
    let d = web_daemon(&sim);
    let body = get_json(&d, "/api/token/callback-url");
    assert_eq!(body, json!({"callback_url": d.callback_url()}));
}

#[test]
fn refresh_info_gives_a_fresh_single_use_login_url() {
    let sim = sim();
    let d = web_daemon(&sim);
    let reply = get(&d, "/api/token/refresh-info");
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let info = reply.json();
    assert_eq!(info["callback_url"], d.callback_url());
    assert!(
        info["instructions"]
            .as_str()
            .is_some_and(|s| s.len() > 20 && s.contains(&d.callback_url())),
        "{info}"
    );
    let state_of = |info: &Value| -> String {
        let raw = info["login_url"].as_str().expect("login_url");
        assert!(raw.contains("redirect_params=state%3D"), "{raw}");
        let url = url::Url::parse(raw).expect("login_url parses");
        assert_eq!(
            format!("{}://{}{}", url.scheme(), url.authority(), url.path()),
            sim.login_url()
        );
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("login_url lacks {name}: {raw}"))
        };
        assert_eq!(param("v"), "3");
        assert_eq!(param("api_key"), sim.api_key());
        let redirect = param("redirect_params");
        let state = redirect.strip_prefix("state=").expect("state=...");
        assert!(
            state.len() >= 32 && state.chars().all(|c| c.is_ascii_hexdigit()),
            "{state}"
        );
        state.to_string()
    };
    let first = state_of(&info);
    let second_info = get_json(&d, "/api/token/refresh-info");
    let second = state_of(&second_info);
    assert_ne!(first, second, "every refresh-info carries a fresh state");

    // The state works once: the login succeeds, a replay of the same callback is refused.
    let (status, page) = follow_browser_login(&d, info["login_url"].as_str().unwrap());
    assert_eq!(status, 200, "{page}");
    let token = sim.issue_request_token();
    let calls = exchange_calls(&sim);
    let replay = get(
        &d,
        &format!("/auth/callback?action=login&type=login&status=success&state={first}&request_token={token}"),
    );
    assert_eq!(replay.status, 400, "{}", replay.text());
    assert!(replay.text().contains("Login failed"));
    assert_eq!(
        exchange_calls(&sim),
        calls,
        "a replayed state never reaches Kite"
    );
    // No state at all (a forged login, CSRF): refused too.
    let forged = get(
        &d,
        &format!("/auth/callback?status=success&request_token={token}"),
    );
    assert_eq!(forged.status, 400);
    assert_eq!(exchange_calls(&sim), calls);
}

// 2. security rules, each attacked

#[test]
fn no_get_route_returns_the_access_token() {
    let sim = sim();
    let (d, allowed) = web_daemon_with_origin(&sim);
    let callback_page = browser_login(&d).page;
    let token = ctl_token(&d);
    assert!(token.len() >= 16, "{token}");
    assert!(
        !callback_page.contains(&token),
        "the callback page shows the token"
    );
    let paths = [
        "/",
        "/?request_token=abc",
        "/static/app.js",
        "/static/app.css",
        "/static/kite-token-flow.js",
        "/static/icon.svg",
        "/favicon.ico",
        "/api/token/status",
        "/api/token/callback-url",
        "/api/token/refresh-info",
        "/healthz",
        "/auth/callback",
        "/auth/callback?status=success",
        "/api/token/generate-access-token",
        "/kite/postback",
        "/access_token",
        "/api/token",
    ];
    for path in paths {
        for origin in [None, Some(allowed.as_str())] {
            let headers: Vec<(&str, &str)> =
                origin.map(|o| vec![("Origin", o)]).unwrap_or_default();
            let reply = d.http("GET", path, &headers, b"");
            let all = format!("{:?}\n{}", reply.headers, reply.text());
            assert!(
                !all.contains(&token),
                "GET {path} returned the access token"
            );
        }
    }
    // Nor does the log.
    assert!(!d.log().contains(&token), "the log holds the access token");
}
