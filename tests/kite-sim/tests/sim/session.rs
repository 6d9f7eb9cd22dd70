//! The session API: checksums, the request-token exchange, api key checks, error envelopes, profile and logout.

use std::collections::BTreeSet;
use std::time::Duration;

use kite_proto::checksum::session_checksum;
use kite_sim::{Sim, SimConfig};
use serde_json::{json, Value};

use crate::http_client::{self, HttpReply};
use crate::*;

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
        serde_json::from_str(include_str!("../../../mocks/generate_session.json")).unwrap();
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
    let mock: Value = serde_json::from_str(include_str!("../../../mocks/profile.json")).unwrap();
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
        serde_json::from_str(include_str!("../../../mocks/session_logout.json")).unwrap();
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
