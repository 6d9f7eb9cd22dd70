//! The login page: redirects with redirect_params, cancel, errors that are not redirects, users and login time.

use kite_sim::{Sim, SimConfig};

use crate::http_client::{self};
use crate::*;

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
