//! Refresh tokens, the `/_sim` control routes, and the Date header the clock offset moves.

use kite_proto::checksum::refresh_checksum;
use kite_sim::{Sim, SimConfig};

use crate::http_client::{self, HttpReply};
use crate::*;

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
