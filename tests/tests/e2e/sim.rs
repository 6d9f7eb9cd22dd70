//! The Kite simulator itself, driven over real HTTP: it must behave as Kite's API documentation
//! says Kite does, or tests against it mean nothing.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kite_proto::checksum::{refresh_checksum, session_checksum};
use kite_tests::harness::eventually;
use kite_tests::http_client::{self, HttpReply};
use kite_tests::sim::{Fault, Sim, SimConfig};
use serde_json::{json, Value};

use crate::helper::{first_line, wait_child};

const CALLBACK: &str = "http://127.0.0.1:9/auth/callback";

/// A simulator that redirects logins to [`CALLBACK`] (nothing listens there).
fn redirecting_sim() -> Sim {
    Sim::start(SimConfig {
        redirect_url: Some(CALLBACK.into()),
        ..SimConfig::default()
    })
}

fn checksum(sim: &Sim, request_token: &str) -> String {
    session_checksum(&sim.api_key(), request_token, &sim.api_secret())
}

fn exchange_with(sim: &Sim, request_token: &str, checksum: &str) -> HttpReply {
    http_client::request(
        "POST",
        &format!("{}/session/token", sim.url()),
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Kite-Version", "3"),
        ],
        http_client::encode_form(&[
            ("api_key", &sim.api_key()),
            ("request_token", request_token),
            ("checksum", checksum),
        ])
        .as_bytes(),
    )
    .expect("exchange request failed")
}

fn exchange(sim: &Sim, request_token: &str) -> HttpReply {
    exchange_with(sim, request_token, &checksum(sim, request_token))
}

fn profile(sim: &Sim, api_key: &str, access_token: &str) -> HttpReply {
    let auth = format!("token {api_key}:{access_token}");
    http_client::request(
        "GET",
        &format!("{}/user/profile", sim.url()),
        &[("Authorization", &auth), ("X-Kite-Version", "3")],
        b"",
    )
    .expect("profile request failed")
}

fn logout(sim: &Sim, param: &str, token: &str) -> HttpReply {
    let query = http_client::encode_form(&[("api_key", &sim.api_key()), (param, token)]);
    http_client::request(
        "DELETE",
        &format!("{}/session/token?{query}", sim.url()),
        &[("X-Kite-Version", "3")],
        b"",
    )
    .expect("logout request failed")
}

/// A browser's login at the sim: the 302's Location, parsed.
fn login(sim: &Sim, redirect_params: Option<&str>) -> url::Url {
    let mut url = url::Url::parse(&sim.login_url()).unwrap();
    url.query_pairs_mut()
        .append_pair("v", "3")
        .append_pair("api_key", &sim.api_key());
    if let Some(params) = redirect_params {
        url.query_pairs_mut().append_pair("redirect_params", params);
    }
    let reply = http_client::get(url.as_str()).unwrap();
    assert_eq!(reply.status, 302, "{}", reply.text());
    url::Url::parse(reply.header("location").expect("302 without Location")).unwrap()
}

fn query_of(url: &url::Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Asserts Kite's exact error envelope, JSON content type, status, type and message.
fn assert_kite_error(reply: &HttpReply, status: u16, error_type: &str, message: Option<&str>) {
    assert_eq!(reply.status, status, "body: {}", reply.text());
    assert_eq!(
        reply.media_type().as_deref(),
        Some("application/json"),
        "error without JSON content type: {}",
        reply.text()
    );
    let body = reply.json();
    let keys: BTreeSet<&str> = body
        .as_object()
        .expect("envelope is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["status", "message", "error_type", "data"]),
        "{body}"
    );
    assert_eq!(body["status"], "error");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["error_type"], error_type, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    if let Some(message) = message {
        assert_eq!(body["message"], message);
    }
}

fn is_token(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[test]
fn checksum_test_vector_and_construction() {
    assert_eq!(
        session_checksum("key", "request", "secret"),
        "e4465f58be6159d2a7f087f4292515e9d631b4f91e056b53e6f14456222ff709"
    );
    let sim = redirecting_sim();
    let token = sim.issue_request_token();
    // Separators between the parts are not Kite's construction.
    let with_colons = session_checksum(&format!("{}:", sim.api_key()), &token, &sim.api_secret());
    assert_kite_error(
        &exchange_with(&sim, &token, &with_colons),
        403,
        "TokenException",
        Some("Invalid `checksum`."),
    );
    let wrong_secret = session_checksum(&sim.api_key(), &token, "not-the-secret");
    assert_kite_error(
        &exchange_with(&sim, &token, &wrong_secret),
        403,
        "TokenException",
        Some("Invalid `checksum`."),
    );
    assert_eq!(exchange(&sim, &token).status, 200);
}

#[test]
fn browser_login_then_exchange_gives_the_mock_session_shape() {
    let sim = redirecting_sim();
    let location = login(&sim, None);
    assert!(location.as_str().starts_with(CALLBACK), "{location}");
    assert_eq!(param(&location, "status").as_deref(), Some("success"));
    assert_eq!(param(&location, "action").as_deref(), Some("login"));
    assert_eq!(param(&location, "type").as_deref(), Some("login"));
    let token = param(&location, "request_token").expect("request_token");
    assert!(is_token(&token, 32), "{token}");

    let reply = exchange(&sim, &token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["status"], "success");
    let data = &body["data"];
    let mock: Value =
        serde_json::from_str(include_str!("../../mocks/generate_session.json")).unwrap();
    let want: BTreeSet<&String> = mock["data"].as_object().unwrap().keys().collect();
    let got: BTreeSet<&String> = data.as_object().unwrap().keys().collect();
    assert_eq!(
        got, want,
        "session fields differ from mocks/generate_session.json"
    );
    assert_eq!(data["user_id"], "AB1234");
    assert_eq!(data["user_name"], "Kite Tester");
    assert_eq!(data["user_shortname"], "Kite");
    assert_eq!(data["api_key"], sim.api_key());
    assert_eq!(data["refresh_token"], "");
    let access = data["access_token"].as_str().unwrap();
    assert!(is_token(access, 32), "{access}");
    assert_ne!(data["public_token"], data["access_token"]);
    assert_eq!(sim.valid_access_tokens(), vec![access.to_string()]);

    // login_time: naive IST, now.
    let login_time = data["login_time"].as_str().unwrap();
    let naive = chrono::NaiveDateTime::parse_from_str(login_time, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("login_time {login_time:?}: {e}"));
    let now_ist = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .naive_local();
    assert!((now_ist - naive).num_seconds().abs() < 60, "{login_time}");

    let calls = sim.calls_to("POST", "/session/token");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].x_kite_version.as_deref(), Some("3"));
    assert_eq!(
        calls[0].content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(calls[0].form_param("request_token"), Some(token));
    assert_eq!(calls[0].status, Some(200));
}

#[test]
fn request_token_is_single_use() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();
    assert_eq!(exchange(&sim, &token).status, 200);
    assert_kite_error(
        &exchange(&sim, &token),
        403,
        "TokenException",
        Some("Token is invalid or has expired."),
    );
    assert_kite_error(
        &exchange(&sim, "NeverIssuedNeverIssuedNeverIssue"),
        403,
        "TokenException",
        Some("Token is invalid or has expired."),
    );
    assert_eq!(sim.valid_access_tokens().len(), 1);
}

#[test]
fn failed_checksum_does_not_consume_the_token() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();
    assert_kite_error(
        &exchange_with(&sim, &token, &"0".repeat(64)),
        403,
        "TokenException",
        Some("Invalid `checksum`."),
    );
    assert!(sim.valid_access_tokens().is_empty());
    assert_eq!(exchange(&sim, &token).status, 200);
}

#[test]
fn request_tokens_expire() {
    let sim = Sim::start(SimConfig {
        request_token_ttl: Duration::ZERO,
        ..SimConfig::default()
    });
    let token = sim.issue_request_token();
    assert_kite_error(
        &exchange(&sim, &token),
        403,
        "TokenException",
        Some("Token is invalid or has expired."),
    );
    // Lifting the limit revives an unused token: age is measured at exchange time.
    sim.set_request_token_ttl(Duration::from_secs(60));
    assert_eq!(exchange(&sim, &token).status, 200);
}

#[test]
fn json_body_and_wrong_content_type_are_rejected_without_consuming() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();
    let fields = json!({
        "api_key": sim.api_key(),
        "request_token": token,
        "checksum": checksum(&sim, &token),
    });
    let url = format!("{}/session/token", sim.url());
    let reply = http_client::post_json(&url, &fields).unwrap();
    assert_kite_error(&reply, 400, "InputException", None);
    let form = http_client::encode_form(&[
        ("api_key", &sim.api_key()),
        ("request_token", &token),
        ("checksum", &checksum(&sim, &token)),
    ]);
    let reply = http_client::request(
        "POST",
        &url,
        &[("Content-Type", "text/plain")],
        form.as_bytes(),
    )
    .unwrap();
    assert_kite_error(&reply, 400, "InputException", None);
    // Charset parameters are fine.
    let reply = http_client::request(
        "POST",
        &url,
        &[(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )],
        form.as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[test]
fn api_key_checks() {
    let sim = redirecting_sim();
    let url = format!("{}/session/token", sim.url());
    let token = sim.issue_request_token();
    for key in [None, Some(""), Some("abc")] {
        let mut pairs = vec![("request_token", token.as_str()), ("checksum", "x")];
        if let Some(key) = key {
            pairs.push(("api_key", key));
        }
        assert_kite_error(
            &http_client::post_form(&url, &pairs).unwrap(),
            400,
            "InputException",
            Some("`api_key` should be minimum 6 characters in length."),
        );
    }
    let other = "someotherkey0001";
    let sum = session_checksum(other, &token, &sim.api_secret());
    let reply = http_client::post_form(
        &url,
        &[
            ("api_key", other),
            ("request_token", &token),
            ("checksum", &sum),
        ],
    )
    .unwrap();
    assert_kite_error(&reply, 403, "TokenException", None);
    assert_eq!(exchange(&sim, &token).status, 200);
}

#[test]
fn every_error_is_a_json_envelope() {
    let sim = redirecting_sim();
    let root = sim.url();
    let cases: Vec<(HttpReply, u16, &str)> = vec![
        (
            http_client::get(&format!("{root}/nope")).unwrap(),
            404,
            "GeneralException",
        ),
        (
            http_client::get(&format!("{root}/session/token")).unwrap(),
            405,
            "GeneralException",
        ),
        (
            http_client::post_form(&format!("{root}/session/token"), &[]).unwrap(),
            400,
            "InputException",
        ),
        (
            http_client::request("GET", &format!("{root}/user/profile"), &[], b"").unwrap(),
            403,
            "TokenException",
        ),
        (
            http_client::request(
                "DELETE",
                &format!("{root}/session/token?api_key={}", sim.api_key()),
                &[],
                b"",
            )
            .unwrap(),
            400,
            "InputException",
        ),
        (
            http_client::post_form(
                &format!("{root}/session/refresh_token"),
                &[
                    ("api_key", &sim.api_key()),
                    ("refresh_token", "x"),
                    ("checksum", "y"),
                ],
            )
            .unwrap(),
            403,
            "TokenException",
        ),
    ];
    for (reply, status, error_type) in &cases {
        assert_kite_error(reply, *status, error_type, None);
    }
}

#[test]
fn profile_needs_a_live_token() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();
    let data = exchange(&sim, &token).json()["data"].clone();
    let access = data["access_token"].as_str().unwrap().to_string();

    let reply = profile(&sim, &sim.api_key(), &access);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["data"]["user_id"], "AB1234");
    assert_eq!(body["data"]["user_name"], "Kite Tester");
    let mock: Value = serde_json::from_str(include_str!("../../mocks/profile.json")).unwrap();
    let want: BTreeSet<&String> = mock["data"].as_object().unwrap().keys().collect();
    let got: BTreeSet<&String> = body["data"].as_object().unwrap().keys().collect();
    assert_eq!(got, want, "profile fields differ from mocks/profile.json");
    assert!(body["data"].get("access_token").is_none());

    let bad = "Incorrect `api_key` or `access_token`.";
    assert_kite_error(
        &profile(&sim, "wrongkey00000000", &access),
        403,
        "TokenException",
        Some(bad),
    );
    assert_kite_error(
        &profile(&sim, &sim.api_key(), "nope"),
        403,
        "TokenException",
        Some(bad),
    );

    sim.kill_access_token(&access);
    assert_kite_error(
        &profile(&sim, &sim.api_key(), &access),
        403,
        "TokenException",
        Some(bad),
    );
    assert!(sim.valid_access_tokens().is_empty());
}

#[test]
fn logout_kills_only_that_token() {
    let sim = redirecting_sim();
    let first = exchange(&sim, &sim.issue_request_token()).json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Logging in again does not kill the previous token.
    let second = exchange(&sim, &sim.issue_request_token()).json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(profile(&sim, &sim.api_key(), &first).status, 200);

    let reply = logout(&sim, "access_token", &first);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let mock: Value =
        serde_json::from_str(include_str!("../../mocks/session_logout.json")).unwrap();
    assert_eq!(reply.json(), mock);
    assert_kite_error(
        &profile(&sim, &sim.api_key(), &first),
        403,
        "TokenException",
        None,
    );
    assert_eq!(profile(&sim, &sim.api_key(), &second).status, 200);
    assert_eq!(sim.valid_access_tokens(), vec![second]);
    // A dead token cannot be logged out again.
    assert_kite_error(
        &logout(&sim, "access_token", &first),
        403,
        "TokenException",
        None,
    );
}

#[test]
fn injected_statuses_use_kites_error_types() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();
    for (status, error_type) in [
        (503, "NetworkException"),
        (429, "NetworkException"),
        (500, "GeneralException"),
        (502, "NetworkException"),
        (504, "DataException"),
    ] {
        sim.fail_next(1, status);
        let reply = exchange(&sim, &token);
        assert_kite_error(&reply, status, error_type, None);
        if status == 429 {
            assert_eq!(reply.header("retry-after"), Some("1"));
        }
    }
    // None of them consumed the request token.
    sim.fail_next(2, 503);
    assert_eq!(exchange(&sim, &token).status, 503);
    assert_eq!(exchange(&sim, &token).status, 503);
    let reply = exchange(&sim, &token);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let statuses: Vec<Option<u16>> = sim.calls().iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [503, 429, 500, 502, 504, 503, 503, 200].map(Some).to_vec()
    );
}

#[test]
fn faults_do_not_touch_the_login_page() {
    let sim = redirecting_sim();
    sim.fail_next(1, 500);
    let location = login(&sim, None);
    assert_eq!(param(&location, "status").as_deref(), Some("success"));
    // The fault is still queued for the next API call.
    let token = param(&location, "request_token").unwrap();
    assert_eq!(exchange(&sim, &token).status, 500);
    assert_eq!(exchange(&sim, &token).status, 200);
}

#[test]
fn hang_never_answers_and_does_not_block_others_or_shutdown() {
    let sim = redirecting_sim();
    sim.set_fault(1, Fault::Hang);
    let started = Instant::now();
    let url = format!("{}/user/profile", sim.url());
    let err = http_client::request_with_timeout("GET", &url, &[], b"", Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.calls()[0].status, None);

    // Others are still served while one request hangs; a hung request in flight does not
    // keep the simulator from stopping.
    sim.set_fault(1, Fault::Hang);
    let (tx, rx) = mpsc::channel();
    let hung_url = url.clone();
    std::thread::spawn(move || {
        let result =
            http_client::request_with_timeout("GET", &hung_url, &[], b"", Duration::from_secs(30));
        let _ = tx.send(result.map(|r| r.status));
    });
    eventually(Duration::from_secs(5), "the hung call to arrive", || {
        sim.calls().len() == 2
    });
    assert_eq!(
        http_client::request("GET", &url, &[], b"").unwrap().status,
        403
    );
    let addr = sim.addr();
    let dropped = Instant::now();
    drop(sim);
    let outcome = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the hung client was not released when the sim stopped");
    assert!(outcome.is_err(), "a hung call got an answer: {outcome:?}");
    assert!(dropped.elapsed() < Duration::from_secs(10));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[test]
fn non_json_wrong_content_type_and_truncated_faults() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();

    sim.set_fault(1, Fault::NonJson);
    let reply = exchange(&sim, &token);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type().as_deref(), Some("text/html"));
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());

    sim.set_fault(1, Fault::Truncated);
    let err = http_client::request(
        "POST",
        &format!("{}/session/token", sim.url()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        http_client::encode_form(&[
            ("api_key", &sim.api_key()),
            ("request_token", &token),
            ("checksum", &checksum(&sim, &token)),
        ])
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");

    // Wrong content type: the real answer (the token is consumed), labelled text/plain.
    sim.set_fault(1, Fault::WrongContentType);
    let reply = exchange(&sim, &token);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type().as_deref(), Some("text/plain"));
    assert_eq!(reply.json()["status"], "success");
    assert_eq!(sim.valid_access_tokens().len(), 1);
    assert_eq!(exchange(&sim, &token).status, 403);
}

#[test]
fn truncated_reply_sends_a_partial_body() {
    let sim = redirecting_sim();
    sim.set_fault(1, Fault::Truncated);
    let raw = http_client::raw(
        sim.addr(),
        format!(
            "GET /user/profile HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            sim.addr()
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head arrived");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length");
    assert!(!body.is_empty() && body.len() < announced, "{text}");
}

#[test]
fn redirect_carries_redirect_params_pairs() {
    let sim = redirecting_sim();
    let location = login(&sim, Some("state=abc123&x=a b"));
    let pairs = query_of(&location);
    for want in [
        ("action", "login"),
        ("type", "login"),
        ("status", "success"),
        ("state", "abc123"),
        ("x", "a b"),
    ] {
        assert!(
            pairs.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} missing from {location}"
        );
    }
    // The raw login URL carried ONE encoded parameter.
    let call = &sim.calls_to("GET", "/connect/login")[0];
    assert!(
        call.query
            .contains("redirect_params=state%3Dabc123%26x%3Da"),
        "{}",
        call.query
    );
    assert_eq!(
        call.query_param("redirect_params").as_deref(),
        Some("state=abc123&x=a b")
    );

    // A registered redirect URL with its own query keeps it.
    sim.set_redirect_url("http://localhost:9/cb?app=1");
    let location = login(&sim, None);
    assert_eq!(location.path(), "/cb");
    assert_eq!(param(&location, "app").as_deref(), Some("1"));
    assert!(param(&location, "request_token").is_some());
}

#[test]
fn cancel_redirects_with_only_the_status() {
    let sim = redirecting_sim();
    sim.set_cancel(true);
    let location = login(&sim, Some("state=abc123"));
    assert_eq!(
        query_of(&location),
        vec![("status".to_string(), "cancelled".to_string())]
    );
    sim.set_cancel(false);
    assert_eq!(
        param(&login(&sim, None), "status").as_deref(),
        Some("success")
    );
}

#[test]
fn login_page_errors_are_not_redirects() {
    let sim = Sim::start(SimConfig::default());
    let url = format!("{}?v=3&api_key={}", sim.login_url(), sim.api_key());
    let reply = http_client::get(&url).unwrap();
    assert_eq!(reply.status, 400, "no redirect URL registered");
    assert!(reply.header("location").is_none());
    sim.set_redirect_url(CALLBACK);
    let reply =
        http_client::get(&format!("{}?v=3&api_key=unknownkey000001", sim.login_url())).unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.media_type().as_deref(), Some("text/html"));
    assert_eq!(http_client::get(&url).unwrap().status, 302);
}

#[test]
fn users_and_login_time_follow_the_settings() {
    let sim = redirecting_sim();
    sim.set_user("ZX9999", "Other Person");
    sim.set_login_time(Some("2026-11-23 05:59:30".into()));
    let data = exchange(&sim, &sim.issue_request_token()).json()["data"].clone();
    assert_eq!(data["user_id"], "ZX9999");
    assert_eq!(data["user_name"], "Other Person");
    assert_eq!(data["login_time"], "2026-11-23 05:59:30");
    let access = data["access_token"].as_str().unwrap();
    assert_eq!(
        profile(&sim, &sim.api_key(), access).json()["data"]["user_id"],
        "ZX9999"
    );
    sim.set_login_time(None);
    let data = exchange(&sim, &sim.issue_request_token()).json()["data"].clone();
    assert_ne!(data["login_time"], "2026-11-23 05:59:30");
}

#[test]
fn refresh_tokens_renew_and_die() {
    let sim = redirecting_sim();
    sim.set_refresh_tokens(true);
    let data = exchange(&sim, &sim.issue_request_token()).json()["data"].clone();
    let refresh = data["refresh_token"].as_str().unwrap().to_string();
    assert!(is_token(&refresh, 32));
    let url = format!("{}/session/refresh_token", sim.url());
    let renew = |sum: &str| {
        http_client::post_form(
            &url,
            &[
                ("api_key", &sim.api_key()),
                ("refresh_token", &refresh),
                ("checksum", sum),
            ],
        )
        .unwrap()
    };
    let good = refresh_checksum(&sim.api_key(), &refresh, &sim.api_secret());
    let reply = renew(&good);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let renewed = reply.json()["data"].clone();
    assert_eq!(renewed["user_id"], "AB1234");
    assert_eq!(renewed["refresh_token"], refresh.as_str());
    let new_access = renewed["access_token"].as_str().unwrap();
    assert_ne!(new_access, data["access_token"].as_str().unwrap());
    assert!(renewed["login_time"].is_string());
    assert_eq!(profile(&sim, &sim.api_key(), new_access).status, 200);

    assert_kite_error(&renew(&"f".repeat(64)), 403, "TokenException", None);
    assert_eq!(logout(&sim, "refresh_token", &refresh).status, 200);
    assert_kite_error(&renew(&good), 403, "TokenException", None);
}

#[test]
fn control_routes_drive_the_simulator() {
    let sim = redirecting_sim();
    let root = sim.url();
    let post = |path: &str| {
        let reply = http_client::request("POST", &format!("{root}{path}"), &[], b"").unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        reply.json()
    };
    let token = post("/_sim/request-token")["request_token"]
        .as_str()
        .unwrap()
        .to_string();
    post("/_sim/fail?count=1&status=503");
    assert_eq!(exchange(&sim, &token).status, 503);
    let access = exchange(&sim, &token).json()["data"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    post(&format!("/_sim/kill?access_token={access}"));
    assert_eq!(profile(&sim, &sim.api_key(), &access).status, 403);
    post("/_sim/redirect?url=http%3A%2F%2F127.0.0.1%3A7%2Fcb");
    assert_eq!(sim.redirect_url().as_deref(), Some("http://127.0.0.1:7/cb"));
    post("/_sim/cancel?on=1");
    assert_eq!(
        param(&login(&sim, None), "status").as_deref(),
        Some("cancelled")
    );
    post("/_sim/cancel?on=0");
    post("/_sim/fault?count=1&kind=non-json");
    assert_eq!(
        http_client::get(&format!("{root}/user/profile"))
            .unwrap()
            .media_type()
            .as_deref(),
        Some("text/html")
    );

    let calls = http_client::get(&format!("{root}/_sim/calls"))
        .unwrap()
        .json();
    let paths: Vec<&str> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/session/token",
            "/session/token",
            "/user/profile",
            "/connect/login",
            "/user/profile"
        ]
    );
    assert_eq!(sim.calls().len(), 5, "control routes are not logged");
}

#[test]
fn kite_sim_binary_prints_env_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kite-sim"))
        .args(["--listen", "127.0.0.1:0", "--redirect-url", CALLBACK])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child, "kite-sim", Duration::from_secs(10));
    let env: Vec<(&str, &str)> = line
        .trim()
        .strip_prefix("export ")
        .expect("an export line")
        .split(' ')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let get = |k: &str| env.iter().find(|(key, _)| *key == k).unwrap().1;
    let root = get("KITE_API_ROOT");
    assert_eq!(get("KITE_LOGIN_URL"), format!("{root}/connect/login"));
    assert_eq!(get("KITE_API_KEY"), "kitedtestkey0001");
    assert_eq!(get("KITE_API_SECRET"), "simsecret-0123456789abcdef");

    let token = http_client::request("POST", &format!("{root}/_sim/request-token"), &[], b"")
        .unwrap()
        .json()["request_token"]
        .as_str()
        .unwrap()
        .to_string();
    let sum = session_checksum(get("KITE_API_KEY"), &token, get("KITE_API_SECRET"));
    let reply = http_client::post_form(
        &format!("{root}/session/token"),
        &[
            ("api_key", get("KITE_API_KEY")),
            ("request_token", &token),
            ("checksum", &sum),
        ],
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    let login = http_client::get(&format!(
        "{}?v=3&api_key={}",
        get("KITE_LOGIN_URL"),
        get("KITE_API_KEY")
    ))
    .unwrap();
    assert!(login.header("location").unwrap().starts_with(CALLBACK));

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = wait_child(&mut child, Duration::from_secs(5), "kite-sim after SIGTERM");
    assert!(status.success(), "{status}");
}

/// Kite's `Date` header as the simulator sends it, as a time.
fn date_of(reply: &HttpReply) -> chrono::DateTime<chrono::Utc> {
    let date = reply
        .header("date")
        .unwrap_or_else(|| panic!("no Date header: {:?}", reply.headers));
    chrono::DateTime::parse_from_rfc2822(date)
        .unwrap_or_else(|e| panic!("Date {date:?} is not an HTTP date: {e}"))
        .with_timezone(&chrono::Utc)
}

#[test]
fn every_answer_carries_a_date_that_the_offset_moves() {
    let sim = Sim::start(SimConfig::default());
    let near = |reply: &HttpReply, offset: i64| {
        let skew = (date_of(reply) - chrono::Utc::now()).num_seconds() - offset;
        assert!(
            skew.abs() <= 2,
            "Date {:?} is {skew} s off",
            reply.header("date")
        );
    };
    near(&profile(&sim, &sim.api_key(), "nope"), 0);
    sim.set_date_offset(-3600);
    near(&profile(&sim, &sim.api_key(), "nope"), -3600);
    let set = http_client::post_form(&format!("{}/_sim/date-offset?secs=90", sim.url()), &[])
        .expect("date-offset route");
    assert_eq!(set.status, 200, "{}", set.text());
    near(&set, 90);
    near(&profile(&sim, &sim.api_key(), "nope"), 90);
    let bad = http_client::post_form(&format!("{}/_sim/date-offset?secs=soon", sim.url()), &[])
        .expect("date-offset route");
    assert_eq!(bad.status, 400);
}
