//! The HTTP face of kited, tested against the real `kited` binary and the Kite simulator over
//! real HTTP on loopback: every route's shape, every failure's status and `detail`, each security rule by trying to break
//! it, and the page and the JS widgets in a real headless Chromium.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Timelike;
use kite_tests::harness::{free_port, reply_status};
use kite_tests::http_client::{self, HttpReply};
use kite_tests::{follow_browser_login, Daemon, Fault};
use serde_json::{json, Value};

use crate::helper::{
    browser_login, ctl_token, exchange_calls, fresh_states, get, get_json, rfc3339_json, sim,
    web_config, web_daemon,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn post_json_raw(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    d.http("POST", path, &all, body)
}

fn generate(d: &Daemon, body: &Value) -> HttpReply {
    post_json_raw(
        d,
        "/api/token/generate-access-token",
        &[],
        body.to_string().as_bytes(),
    )
}

/// Asserts a failure answer: `status`, JSON `{"detail": "..."}` and nothing else, and the detail
/// containing every one of `needles`. Returns the detail.
fn assert_detail(reply: &HttpReply, status: u16, needles: &[&str]) -> String {
    assert_eq!(
        reply.status,
        status,
        "expected HTTP {status}, got {}: {}",
        reply.status,
        reply.text()
    );
    assert_eq!(reply.media_type().as_deref(), Some("application/json"));
    let body = reply.json();
    let object = body.as_object().expect("an error answer is a JSON object");
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        vec!["detail"],
        "only `detail`: {body}"
    );
    let detail = body["detail"].as_str().expect("detail is a string");
    for needle in needles {
        assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
    }
    detail.to_string()
}

/// [`assert_detail`] for a raw reply text: the status, a JSON `{"detail"}` body naming `needle`.
fn assert_raw_detail(reply: &str, status: u16, needle: &str) {
    assert_eq!(reply_status(reply), status, "{reply}");
    let (_, body) = reply.split_once("\r\n\r\n").expect("a reply head");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "{reply}");
}

const GENERATE_FAILED: &str = "Failed to generate access token: ";

fn header<'a>(reply: &'a HttpReply, name: &str) -> Option<&'a str> {
    reply.header(name)
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. routes and shapes

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

#[test]
fn not_configured_answers_503_with_detail() {
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&web_config(""))
        .no_api_key()
        .start();
    let status = get_json(&d, "/api/token/status");
    assert_eq!(status["configured"], false);
    assert_eq!(status["state"], "none");
    assert_eq!(status["valid"], false);
    assert_eq!(status["needs_refresh"], true);
    assert_detail(&get(&d, "/api/token/refresh-info"), 503, &["KITE_API_KEY"]);
    let token = sim.issue_request_token();
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        503,
        &[GENERATE_FAILED, "KITE_API_KEY"],
    );
    assert_eq!(exchange_calls(&sim), 0);
    assert_eq!(get(&d, "/healthz").status, 200);
    assert_eq!(get(&d, "/api/token/callback-url").status, 200);
}

#[test]
fn generate_success_has_every_seed_field_and_stores_the_token() {
    let sim = sim();
    let d = web_daemon(&sim);
    let request_token = sim.issue_request_token();
    let reply = generate(&d, &json!({ "request_token": request_token }));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["success"], true);
    let access_token = body["access_token"].as_str().expect("access_token");
    assert!(!access_token.is_empty());
    assert_eq!(sim.valid_access_tokens(), vec![access_token.to_string()]);
    assert_eq!(body["user_id"], "AB1234");
    assert_eq!(body["user_name"], "Kite Tester");
    assert_eq!(body["user_shortname"], "Kite");
    assert_eq!(body["email"], "ab1234@example.com");
    assert_eq!(body["user_type"], "individual");
    assert_eq!(body["broker"], "ZERODHA");
    for (key, member) in [
        ("exchanges", "NSE"),
        ("products", "CNC"),
        ("order_types", "LIMIT"),
    ] {
        let list = body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {body}"));
        assert!(list.contains(&json!(member)), "{key}: {body}");
    }
    for key in ["message", "instructions"] {
        assert!(
            body[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}: {body}"
        );
    }
    // One call to Kite, with this request token; the daemon stored what Kite issued.
    let calls = sim.calls_to("POST", "/session/token");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].form_param("request_token").as_deref(),
        Some(request_token.as_str())
    );
    assert_eq!(ctl_token(&d), access_token);
    let status = get_json(&d, "/api/token/status");
    assert!(fresh_states().contains(&status["state"].as_str().unwrap()));
    assert_eq!(status["user_name"], "Kite Tester");

    // The whole redirected URL is accepted as well (what people paste).
    let pasted = format!(
        "{}?action=login&type=login&status=success&request_token={}",
        d.callback_url(),
        sim.issue_request_token()
    );
    let reply = generate(&d, &json!({ "request_token": pasted }));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let second = reply.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, access_token);
    assert_eq!(ctl_token(&d), second);
}

#[test]
fn generate_failures_are_honest() {
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&web_config("[kite]\ntimeout = \"1s\"\n"))
        .start();
    let post = |body: &[u8]| post_json_raw(&d, "/api/token/generate-access-token", &[], body);

    // Malformed requests: 400, and nothing reaches Kite.
    assert_detail(
        &post(b"{}"),
        400,
        &[GENERATE_FAILED, "request_token is required"],
    );
    assert_detail(
        &post(br#"{"request_token": null}"#),
        400,
        &[GENERATE_FAILED, "required"],
    );
    assert_detail(
        &post(br#"{"request_token": ""}"#),
        400,
        &[GENERATE_FAILED, "empty"],
    );
    assert_detail(
        &post(br#"{"request_token": "   "}"#),
        400,
        &[GENERATE_FAILED, "empty"],
    );
    assert_detail(
        &post(br#"{"request_token": 42}"#),
        400,
        &[GENERATE_FAILED, "string"],
    );
    assert_detail(&post(b"request_token=abc"), 400, &[GENERATE_FAILED, "JSON"]);
    assert_detail(&post(b""), 400, &[GENERATE_FAILED, "JSON"]);
    assert_detail(&post(b"[1,2"), 400, &[GENERATE_FAILED, "JSON"]);
    assert_detail(
        &post(br#"{"request_token": "has spaces and / slashes"}"#),
        400,
        &[GENERATE_FAILED],
    );
    assert_eq!(
        exchange_calls(&sim),
        0,
        "malformed requests never reach Kite"
    );

    // Kite refuses a reused request token: 400 with Kite's own words.
    let token = sim.issue_request_token();
    let ok = generate(&d, &json!({ "request_token": token }));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        400,
        &[GENERATE_FAILED, "Token is invalid or has expired."],
    );
    // And one Kite never issued.
    assert_detail(
        &generate(
            &d,
            &json!({"request_token": "NeverIssuedByKite0123456789abcdef"}),
        ),
        400,
        &[GENERATE_FAILED, "Token is invalid or has expired."],
    );
    assert_eq!(exchange_calls(&sim), 3);

    // Kite down (503): 502, and the request token is not lost (it works once Kite is back).
    let token = sim.issue_request_token();
    sim.fail_next(1, 503);
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        502,
        &[GENERATE_FAILED, "unavailable", "503"],
    );
    sim.fail_next(1, 429);
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        502,
        &[GENERATE_FAILED, "429"],
    );
    sim.set_fault(1, Fault::NonJson);
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        502,
        &[GENERATE_FAILED],
    );
    let ok = generate(&d, &json!({ "request_token": token }));
    assert_eq!(ok.status, 200, "{}", ok.text());

    // Kite hangs: 504 within kite.timeout (1 s here), not a hung request.
    let token = sim.issue_request_token();
    sim.set_fault(1, Fault::Hang);
    let started = Instant::now();
    let reply = generate(&d, &json!({ "request_token": token }));
    let took = started.elapsed();
    assert_detail(&reply, 504, &[GENERATE_FAILED, "did not answer"]);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}"
    );
    // Unreachable Kite at all: a daemon pointed at a closed port answers 502.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let lonely = Daemon::builder(&sim)
        .config_toml(&web_config("[kite]\ntimeout = \"2s\"\n"))
        .env("KITE_API_ROOT", &closed)
        .keep_redirect()
        .start();
    assert_detail(
        &generate(
            &lonely,
            &json!({ "request_token": sim.issue_request_token() }),
        ),
        502,
        &[GENERATE_FAILED, "reach Kite"],
    );
}

/// The same failure gets the same status on every route (one table from error kind to HTTP
/// status): a Kite that does not answer is 504 and a login as the wrong user 403, whether the
/// browser's callback or the JSON API met it; the socket names the same kinds.
#[test]
fn every_route_maps_a_failure_to_the_same_status() {
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&web_config(
            "[kite]\ntimeout = \"1s\"\nuser_id = \"ZZ9999\"\n",
        ))
        .start();
    let callback = |d: &Daemon| {
        let answer = d.request(&json!({"op": "login_url"}));
        follow_browser_login(d, answer["login_url"].as_str().unwrap())
    };

    // Kite hangs.
    sim.set_fault(1, Fault::Hang);
    let (status, page) = callback(&d);
    assert_eq!(status, 504, "callback page: {page}");
    sim.set_fault(1, Fault::Hang);
    let reply = generate(&d, &json!({ "request_token": sim.issue_request_token() }));
    assert_detail(&reply, 504, &[GENERATE_FAILED, "did not answer"]);
    sim.set_fault(1, Fault::Hang);
    let answer = d.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["error"]["kind"], "kite_timeout", "{answer}");

    // A real login, as somebody else than kite.user_id.
    let (status, page) = callback(&d);
    assert_eq!(status, 403, "callback page: {page}");
    assert!(page.contains("ZZ9999"), "{page}");
    let reply = generate(&d, &json!({ "request_token": sim.issue_request_token() }));
    assert_detail(&reply, 403, &[GENERATE_FAILED, "ZZ9999"]);
    let answer = d.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["error"]["kind"], "wrong_user", "{answer}");
}

#[test]
fn healthz_and_unknown_routes() {
    let sim = sim();
    let d = web_daemon(&sim);
    let health = get(&d, "/healthz");
    assert_eq!(health.status, 200);
    assert_detail(&get(&d, "/no/such/route"), 404, &[]);
    assert_detail(
        &d.http(
            "POST",
            "/api/token/status",
            &[("Content-Type", "application/json")],
            b"{}",
        ),
        405,
        &[],
    );
    assert_detail(&get(&d, "/api/token/generate-access-token"), 405, &[]);
    // The page and its assets.
    for (path, media) in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/kite-token-flow.js", "text/javascript"),
    ] {
        let reply = get(&d, path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.media_type().as_deref(), Some(media), "{path}");
        assert_eq!(header(&reply, "x-content-type-options"), Some("nosniff"));
    }
    let js = get(&d, "/static/kite-token-flow.js").text();
    for name in [
        "KiteTokenFlow",
        "createTokenRefreshButton",
        "createTokenStatusIndicator",
        "ensureValidToken",
    ] {
        assert!(js.contains(name), "kite-token-flow.js lacks {name}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. security rules, each attacked

#[test]
fn host_header_must_name_this_server() {
    let sim = sim();
    let d = web_daemon(&sim);
    let port = d.http_addr().port();
    let other = port.wrapping_add(1).max(1024);
    let bad_hosts = [
        format!("evil.com:{port}"),
        "evil.com".to_string(),
        format!("127.0.0.1:{other}"),
        format!("localhost:{other}"),
        format!("127.0.0.1:{port}.evil.com"),
        format!("evil.127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        "localhost".to_string(),
    ];
    for host in &bad_hosts {
        let reply = d.http("GET", "/api/token/status", &[("Host", host)], b"");
        assert!(
            (400..500).contains(&reply.status),
            "Host {host} → {}",
            reply.status
        );
        assert!(!reply.text().contains("\"state\""), "Host {host} got data");
        let page = d.http("GET", "/", &[("Host", host)], b"");
        assert!((400..500).contains(&page.status), "GET / with Host {host}");
    }
    // An exchange and a callback with a bad Host never reach Kite, even with good tokens.
    let token = sim.issue_request_token();
    let info = get_json(&d, "/api/token/refresh-info");
    let login_url = url::Url::parse(info["login_url"].as_str().unwrap()).unwrap();
    let state = login_url
        .query_pairs()
        .find(|(k, _)| k == "redirect_params")
        .map(|(_, v)| v.trim_start_matches("state=").to_string())
        .unwrap();
    let callback =
        format!("/auth/callback?action=login&status=success&state={state}&request_token={token}");
    for host in &bad_hosts {
        let reply = d.http(
            "POST",
            "/api/token/generate-access-token",
            &[("Host", host), ("Content-Type", "application/json")],
            json!({ "request_token": token }).to_string().as_bytes(),
        );
        assert!((400..500).contains(&reply.status), "POST with Host {host}");
        let reply = d.http("GET", &callback, &[("Host", host)], b"");
        assert!(
            (400..500).contains(&reply.status),
            "callback with Host {host}"
        );
    }
    // No Host at all (HTTP/1.1 and HTTP/1.0).
    for request in [
        "GET /api/token/status HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /api/token/status HTTP/1.0\r\n\r\n",
    ] {
        let reply = d.raw_http(request.as_bytes());
        let status: u16 = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            status == 0 || (400..500).contains(&status),
            "no Host: {reply}"
        );
        assert!(!reply.contains("\"state\""), "no Host got data: {reply}");
    }
    assert_eq!(
        exchange_calls(&sim),
        0,
        "nothing with a bad Host reached Kite"
    );

    // The names that are this server work: the same callback now logs in.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let reply = d.http("GET", "/api/token/status", &[("Host", &host)], b"");
        assert_eq!(reply.status, 200, "Host {host}");
    }
    let reply = get(&d, &callback);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(exchange_calls(&sim), 1);
}

#[test]
fn post_needs_a_json_content_type() {
    let sim = sim();
    let d = web_daemon(&sim);
    let token = sim.issue_request_token();
    let body = json!({ "request_token": token }).to_string();
    let form = format!("request_token={token}");
    let cases: [(Option<&str>, &str); 6] = [
        (None, &body),
        (Some("text/plain"), &body),
        (Some("text/plain;charset=UTF-8"), &body),
        (Some("application/x-www-form-urlencoded"), &form),
        (Some("multipart/form-data; boundary=x"), &body),
        (Some("application/jsonp"), &body),
    ];
    for (content_type, body) in cases {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| vec![("Content-Type", ct)])
            .unwrap_or_default();
        let reply = d.http(
            "POST",
            "/api/token/generate-access-token",
            &headers,
            body.as_bytes(),
        );
        assert_detail(&reply, 415, &[GENERATE_FAILED, "application/json"]);
    }
    assert_eq!(exchange_calls(&sim), 0);
    // A charset parameter is fine.
    let reply = d.http(
        "POST",
        "/api/token/generate-access-token",
        &[("Content-Type", "application/json; charset=utf-8")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(exchange_calls(&sim), 1);
}

/// Sends a request as raw bytes and returns the status, or 0 when the connection was closed or
/// reset without an answer (acceptable for hostile input, as long as it is not 2xx).
fn status_of(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    reply_status(&d.raw_request(method, path, headers, body))
}

#[test]
fn oversized_headers_are_431() {
    let sim = sim();
    let d = web_daemon(&sim);
    let token = sim.issue_request_token();
    let body = json!({ "request_token": token }).to_string();
    let big = "a".repeat(17 * 1024);
    let reply = d.raw_request(
        "POST",
        "/api/token/generate-access-token",
        &[("Content-Type", "application/json"), ("X-Padding", &big)],
        body.as_bytes(),
    );
    assert_eq!(reply_status(&reply), 431, "{reply}");
    // Many small headers adding up past 16 KiB too.
    let names: Vec<String> = (0..40).map(|i| format!("X-Pad-{i}")).collect();
    let value = "b".repeat(500);
    let mut headers: Vec<(&str, &str)> =
        names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    headers.push(("Content-Type", "application/json"));
    let status = status_of(
        &d,
        "POST",
        "/api/token/generate-access-token",
        &headers,
        body.as_bytes(),
    );
    assert!(status == 431, "many headers → {status}");
    assert_eq!(exchange_calls(&sim), 0, "nothing reached Kite");
    // Ordinary large headers (a few KiB of cookies) are fine.
    let cookie = "c".repeat(6 * 1024);
    let reply = d.http("GET", "/api/token/status", &[("Cookie", &cookie)], b"");
    assert_eq!(reply.status, 200);
}

#[test]
fn oversized_bodies_are_413() {
    let sim = sim();
    let d = web_daemon(&sim);
    let token = sim.issue_request_token();
    // A body that would be a valid exchange if it were read: the token, then padding.
    let padded = |size: usize| {
        let head = format!("{{\"request_token\": \"{token}\", \"pad\": \"");
        let mut body = head.into_bytes();
        body.resize(size - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    };
    // Raw bytes: kited may answer before it has read the whole body, and close.
    let big = padded(70 * 1024);
    let json = [("Content-Type", "application/json")];
    let reply = d.raw_request("POST", "/api/token/generate-access-token", &json, &big);
    assert_raw_detail(&reply, 413, "too large");

    // Chunked, no length: the server must count.
    let mut chunked = Vec::new();
    for piece in big.chunks(8 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = d.raw_request(
        "POST",
        "/api/token/generate-access-token",
        &[json[0], ("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_raw_detail(&reply, 413, "too large");
    // A length that lies (says small, sends more) is not read past the declared length.
    assert_eq!(exchange_calls(&sim), 0, "nothing reached Kite");

    // Just under the limit is read and used.
    let fits = padded(60 * 1024);
    let reply = post_json_raw(&d, "/api/token/generate-access-token", &[], &fits);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(exchange_calls(&sim), 1);
}

/// Reads until the peer closes or `limit` passes; returns what arrived, whether it closed, and
/// when.
fn read_until_closed(mut stream: &TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return (got, false, started.elapsed());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (got, false, started.elapsed())
            }
            Err(_) => return (got, true, started.elapsed()),
        }
    }
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let sim = sim();
    let d = web_daemon(&sim);
    let addr = d.http_addr();
    let host = format!("Host: {addr}\r\n");
    let limit = Duration::from_secs(13);

    // Three ways to hold a connection: say nothing, send half the headers, send half a body.
    let silent = TcpStream::connect(addr).unwrap();
    let mut partial_head = TcpStream::connect(addr).unwrap();
    partial_head
        .write_all(format!("GET /api/token/status HTTP/1.1\r\n{host}X-Slow: a").as_bytes())
        .unwrap();
    let mut partial_body = TcpStream::connect(addr).unwrap();
    partial_body
        .write_all(
            format!(
                "POST /api/token/generate-access-token HTTP/1.1\r\n{host}\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"request_"
            )
            .as_bytes(),
        )
        .unwrap();
    let started = Instant::now();
    let watchers: Vec<JoinHandle<(Vec<u8>, bool, Duration)>> = [silent, partial_head, partial_body]
        .into_iter()
        .map(|stream| std::thread::spawn(move || read_until_closed(&stream, limit)))
        .collect();

    // Meanwhile the server answers everyone else promptly.
    for _ in 0..5 {
        let t = Instant::now();
        let reply = get(&d, "/api/token/status");
        assert_eq!(reply.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a normal request took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let results: Vec<_> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    for (name, (got, closed, _)) in ["silent", "partial headers", "partial body"]
        .iter()
        .zip(&results)
    {
        let text = String::from_utf8_lossy(got);
        assert!(
            *closed,
            "{name}: the server kept the connection open for {limit:?} (got {text:?})"
        );
        assert!(
            !text.contains("\"state\""),
            "{name}: a partial request was answered as a whole: {text}"
        );
    }
    let (_, _, partial_head_took) = &results[1];
    assert!(
        *partial_head_took >= Duration::from_secs(5)
            && *partial_head_took <= Duration::from_millis(12_500),
        "partial headers were cut after {partial_head_took:?}, expected about 10 s"
    );
    let body_text = String::from_utf8_lossy(&results[2].0);
    assert!(
        body_text.is_empty() || body_text.starts_with("HTTP/1.1 408"),
        "partial body: {body_text}"
    );
    assert!(started.elapsed() < Duration::from_secs(14));
    assert_eq!(exchange_calls(&sim), 0);
}

#[test]
fn cors_only_for_allowed_origins_and_never_star() {
    let sim = sim();
    let allowed = format!("http://127.0.0.1:{}", free_port());
    let d = Daemon::builder(&sim)
        .config_toml(&web_config(&format!(
            "[http]\nallowed_origins = [\"{allowed}\"]\n"
        )))
        .start();
    let vary_has_origin = |reply: &HttpReply| {
        reply.header_all("vary").iter().any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("origin"))
        })
    };
    let no_star = |reply: &HttpReply| {
        for value in reply.header_all("access-control-allow-origin") {
            assert_ne!(value.trim(), "*", "never Access-Control-Allow-Origin: *");
        }
    };

    // Allowed origin: reads, preflight, cross-origin POST.
    let reply = d.http("GET", "/api/token/status", &[("Origin", &allowed)], b"");
    assert_eq!(reply.status, 200);
    assert_eq!(
        header(&reply, "access-control-allow-origin"),
        Some(allowed.as_str())
    );
    assert!(vary_has_origin(&reply), "{:?}", reply.headers);
    assert!(header(&reply, "access-control-allow-credentials").is_none());
    let preflight = d.http(
        "OPTIONS",
        "/api/token/generate-access-token",
        &[
            ("Origin", &allowed),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert!(
        preflight.status == 204 || preflight.status == 200,
        "preflight: {} {}",
        preflight.status,
        preflight.text()
    );
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some(allowed.as_str())
    );
    let methods = header(&preflight, "access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allow_headers = header(&preflight, "access-control-allow-headers").unwrap_or("");
    assert!(allow_headers.to_ascii_lowercase().contains("content-type"));
    assert!(vary_has_origin(&preflight));
    let reply = post_json_raw(
        &d,
        "/api/token/generate-access-token",
        &[("Origin", &allowed)],
        json!({"request_token": sim.issue_request_token()})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        header(&reply, "access-control-allow-origin"),
        Some(allowed.as_str())
    );
    assert_eq!(exchange_calls(&sim), 1);

    // Disallowed origins: no ACAO, preflight 403, POST 403 before anything reaches Kite.
    let port = d.http_addr().port();
    let disallowed = [
        "http://evil.example".to_string(),
        format!("http://127.0.0.1:{}", free_port()),
        format!("{allowed}.evil.example"),
        format!("{allowed}/"),
        allowed.replace("127.0.0.1", "localhost"),
        allowed.replace("http:", "https:"),
        "null".to_string(),
        format!("http://127.0.0.1:{port}@evil.example"),
    ];
    for origin in &disallowed {
        let reply = d.http("GET", "/api/token/status", &[("Origin", origin)], b"");
        assert!(
            header(&reply, "access-control-allow-origin").is_none(),
            "GET from {origin}: {:?}",
            reply.headers
        );
        let preflight = d.http(
            "OPTIONS",
            "/api/token/generate-access-token",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        );
        assert_eq!(preflight.status, 403, "preflight from {origin}");
        assert!(header(&preflight, "access-control-allow-origin").is_none());
        let token = sim.issue_request_token();
        let reply = post_json_raw(
            &d,
            "/api/token/generate-access-token",
            &[("Origin", origin)],
            json!({ "request_token": token }).to_string().as_bytes(),
        );
        assert_detail(&reply, 403, &["origin"]);
        assert!(header(&reply, "access-control-allow-origin").is_none());
        no_star(&reply);
    }
    assert_eq!(exchange_calls(&sim), 1, "no disallowed origin reached Kite");

    // kited's own page (same origin) may POST, under either of its names.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let origin = format!("http://{host}");
        let reply = post_json_raw(
            &d,
            "/api/token/generate-access-token",
            &[("Origin", &origin), ("Host", &host)],
            json!({"request_token": sim.issue_request_token()})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            reply.status,
            200,
            "same-origin POST via {host}: {}",
            reply.text()
        );
    }
    // No route ever answers `*`.
    for path in [
        "/",
        "/api/token/status",
        "/static/kite-token-flow.js",
        "/healthz",
        "/nope",
    ] {
        for origin in [allowed.as_str(), "http://evil.example"] {
            no_star(&d.http("GET", path, &[("Origin", origin)], b""));
        }
    }
}

#[test]
fn no_get_route_returns_the_access_token() {
    let sim = sim();
    let allowed = format!("http://127.0.0.1:{}", free_port());
    let d = Daemon::builder(&sim)
        .config_toml(&web_config(&format!(
            "[http]\nallowed_origins = [\"{allowed}\"]\n"
        )))
        .start();
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

#[test]
fn html_has_strict_security_headers_and_no_inline_code() {
    let sim = sim();
    let d = web_daemon(&sim);
    let check = |what: &str, reply: &HttpReply| {
        let csp =
            header(reply, "content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
        assert!(!csp.contains('*'), "{what}: {csp}");
        assert_eq!(header(reply, "x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            header(reply, "referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        assert_eq!(
            header(reply, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(reply.media_type().as_deref(), Some("text/html"), "{what}");
        // Nothing the CSP would block: inline scripts, handlers, inline styles.
        let html = reply.text().to_ascii_lowercase();
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "{what}: inline script {tag}");
        }
        assert!(!html.contains("<style"), "{what}: inline <style>");
        assert!(!html.contains(" style="), "{what}: style attribute");
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!html.contains(handler), "{what}: {handler}");
        }
    };
    check("GET /", &get(&d, "/"));
    check(
        "failed callback",
        &get(&d, "/auth/callback?status=cancelled"),
    );
    let info = get_json(&d, "/api/token/refresh-info");
    let login = http_client::get(info["login_url"].as_str().unwrap()).unwrap();
    let location = login.header("location").unwrap().to_string();
    let reply = http_client::get(&location).unwrap();
    assert_eq!(reply.status, 200);
    check("successful callback", &reply);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
}

#[test]
fn request_token_injection_is_refused_and_escaped() {
    let sim = sim();
    let d = web_daemon(&sim);
    let script = "<script>alert(1)</script>";
    let fresh_state = || {
        let info = get_json(&d, "/api/token/refresh-info");
        let url = url::Url::parse(info["login_url"].as_str().unwrap()).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "redirect_params")
            .map(|(_, v)| v.trim_start_matches("state=").to_string())
            .unwrap()
    };
    let evil = url_encode(script);
    let attempts = [
        format!(
            "/auth/callback?action=login&status=success&state={}&request_token={evil}",
            fresh_state()
        ),
        format!("/auth/callback?status=success&request_token={evil}"),
        format!("/auth/callback?status={evil}&request_token=abc"),
        format!("/auth/callback?status=success&state={evil}&request_token=abc"),
        format!(
            "/auth/callback?status=success&state={}&request_token={}",
            fresh_state(),
            url_encode("\"><img src=x onerror=alert(1)>")
        ),
    ];
    for path in &attempts {
        let reply = get(&d, path);
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        let html = reply.text();
        assert!(html.contains("Login failed"), "{path}: {html}");
        assert!(
            !html.contains("<script>alert"),
            "{path} reflected markup: {html}"
        );
        assert!(
            !html.contains("<img src=x"),
            "{path} reflected markup: {html}"
        );
        assert!(header(&reply, "content-security-policy").is_some());
    }
    // Where the page does quote what it got, it is escaped.
    let reply = get(
        &d,
        &format!("/auth/callback?status={evil}&request_token=abc"),
    );
    assert!(reply.text().contains("&lt;script&gt;"), "{}", reply.text());

    // The paste path (JSON API): refused, answered as JSON (never HTML).
    for pasted in [
        script.to_string(),
        format!("{}?status=success&request_token={script}", d.callback_url()),
        format!("{}?status=success&request_token={evil}", d.callback_url()),
        "abc\"><svg onload=alert(1)>".to_string(),
    ] {
        let reply = generate(&d, &json!({ "request_token": pasted }));
        assert_detail(&reply, 400, &[GENERATE_FAILED]);
    }
    let page = get(&d, &format!("/?request_token={evil}"));
    assert_eq!(
        page.text(),
        get(&d, "/").text(),
        "the page never reflects its query"
    );
    assert_eq!(exchange_calls(&sim), 0, "nothing reached Kite");
}
