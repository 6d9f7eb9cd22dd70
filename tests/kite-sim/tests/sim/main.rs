//! The Kite simulator itself, driven over real HTTP: it must behave as Kite's API documentation
//! says Kite does, or tests against it mean nothing. (The `kite-sim` binary's own test lives with
//! the binary, in kite-tests' end-to-end tests.)

mod control;
mod faults;
mod login_page;
mod session;

/// The tests' plain-HTTP client, shared with kite-tests' harness: one file, compiled into both.
#[path = "../../../src/http_client.rs"]
#[allow(dead_code)]
mod http_client;

/// Polling with a deadline, shared with kite-tests' harness the same way.
#[path = "../../../src/poll.rs"]
mod poll;

use std::collections::BTreeSet;

use kite_proto::checksum::session_checksum;
use kite_sim::{Sim, SimConfig};
use serde_json::Value;

use crate::http_client::HttpReply;
use crate::poll::eventually;

/// A simulator that redirects logins to [`CALLBACK`] (nothing listens there).
fn redirecting_sim() -> Sim {
    Sim::start(SimConfig {
        redirect_url: Some(CALLBACK.into()),
        ..SimConfig::default()
    })
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

const CALLBACK: &str = "http://127.0.0.1:9/auth/callback";

fn checksum(sim: &Sim, request_token: &str) -> String {
    session_checksum(&sim.api_key(), request_token, &sim.api_secret())
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
