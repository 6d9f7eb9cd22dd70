//! Asking kited's HTTP API directly: raw JSON posts, the generate route, `{"detail"}` answers and headers.

use kite_tests::http_client::HttpReply;
use kite_tests::Daemon;
use serde_json::Value;

pub fn post_json_raw(d: &Daemon, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    d.http("POST", path, &all, body)
}

pub fn generate(d: &Daemon, body: &Value) -> HttpReply {
    post_json_raw(
        d,
        "/api/token/generate-access-token",
        &[],
        body.to_string().as_bytes(),
    )
}

/// Asserts a failure answer: `status`, JSON `{"detail": "..."}` and nothing else, and the detail
/// containing every one of `needles`. Returns the detail.
pub fn assert_detail(reply: &HttpReply, status: u16, needles: &[&str]) -> String {
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

pub const GENERATE_FAILED: &str = "Failed to generate access token: ";

/// The GET routes a caller may try, the pages and the failing callbacks included: what the
/// secrets tests read every answer of.
pub const GET_ROUTES: [&str; 10] = [
    "/",
    "/healthz",
    "/api/token/status",
    "/api/token/callback-url",
    "/api/token/refresh-info",
    "/static/kite-token-flow.js",
    "/static/app.js",
    "/auth/callback?status=success&request_token=abc&state=forged",
    "/auth/callback?status=cancelled",
    "/nope",
];

pub fn header<'a>(reply: &'a HttpReply, name: &str) -> Option<&'a str> {
    reply.header(name)
}
