//! The routes' unit tests: every answer's status, detail and headers, over a real session
//! (`fixture`) and without a socket. The public side's rules and the plain HTTP shape checks
//! have files of their own.

mod public;
mod shape;

use super::*;
use crate::server::http::peer_uid::Caller;
use crate::server::http::request::BodyError;
use crate::session::fixture::{self, ACCESS_TOKEN};
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

const MORNING: &str = "2026-11-23 10:00:00";
const EXPIRES: &str = "2026-11-24T06:00:00+05:30";
const HOST: &str = "127.0.0.1:8079";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    map
}

/// A request from kited's own user (or not), with `Host: 127.0.0.1:8079`.
fn request(method: Method, target: &str, own_user: bool) -> HttpRequest {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    HttpRequest {
        method,
        path: path.into(),
        query: query.into(),
        headers: headers(&[("host", HOST)]),
        body: Ok(Bytes::new()),
        listener: Listener::Http,
        local: HOST.parse().unwrap(),
        caller: Arc::new(Caller::known(own_user)),
    }
}

fn get(target: &str) -> HttpRequest {
    request(Method::GET, target, true)
}

/// A JSON POST of `body` from kited's own user.
fn post(target: &str, body: &str) -> HttpRequest {
    let mut request = request(Method::POST, target, true);
    request.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    request.body = Ok(Bytes::from(body.to_string()));
    request
}

async fn answer(session: &Session, request: HttpRequest) -> (u16, Value) {
    let response = route(session, request).await;
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_status_and_callback_url() {
    let f = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
    assert_eq!(
        answer(&f.session, get("/healthz")).await,
        (200, json!({"ok": true}))
    );
    let (status, body) = answer(&f.session, get("/api/token/callback-url")).await;
    assert_eq!(status, 200);
    assert_eq!(body["callback_url"], "http://127.0.0.1:8079/auth/callback");
    let (status, body) = answer(&f.session, get("/api/token/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "valid");
    assert_eq!(body["user_id"], "AB1234");
    assert!(!body.to_string().contains(ACCESS_TOKEN));
    // Another local user sees the state, not whose account it is.
    let (_, body) = answer(&f.session, request(Method::GET, "/api/token/status", false)).await;
    assert_eq!(body["state"], "valid");
    assert_eq!(body["user_id"], Value::Null);
}

#[tokio::test]
async fn the_host_must_name_this_server() {
    let f = fixture::session_with(
        true,
        None,
        MORNING,
        &[("KITED_PUBLIC_URL", "https://kite.example.com")],
    );
    let with_host = |host: &str, target: &str| {
        let mut request = get(target);
        request
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        request
    };
    assert_eq!(
        answer(&f.session, with_host("evil.example", "/healthz"))
            .await
            .0,
        421
    );
    assert_eq!(
        answer(&f.session, with_host("localhost:8079", "/healthz"))
            .await
            .0,
        200
    );
    // The public host reaches the callback's few routes, not the API.
    let public = "kite.example.com";
    assert_eq!(
        answer(&f.session, with_host(public, "/healthz")).await.0,
        200
    );
    assert_eq!(
        answer(&f.session, with_host(public, "/api/token/status"))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn generate_checks_everything_before_kite() {
    let f = fixture::session(true, None, MORNING);
    let path = "/api/token/generate-access-token";
    let detail_of =
        |(status, body): (u16, Value)| (status, body["detail"].as_str().unwrap_or("").to_string());
    let mut plain = post(path, "{}");
    plain.headers.remove(header::CONTENT_TYPE);
    assert_eq!(answer(&f.session, plain).await.0, 415);
    let mut big = post(path, "");
    big.body = Err(BodyError::TooLarge);
    assert_eq!(answer(&f.session, big).await.0, 413);
    let mut slow = post(path, "");
    slow.body = Err(BodyError::TooSlow);
    assert_eq!(answer(&f.session, slow).await.0, 408);
    for (body, why) in [
        ("[1,", "not valid JSON"),
        ("{}", "request_token is required"),
        (r#"{"request_token":" "}"#, "request_token is empty"),
        (r#"{"request_token":7}"#, "must be a string"),
        (r#"{"request_token":"<script>"}"#, "letters and digits"),
    ] {
        let (status, detail) = detail_of(answer(&f.session, post(path, body)).await);
        assert_eq!(status, 400, "{body}");
        assert!(
            detail.starts_with("Failed to generate access token: ") && detail.contains(why),
            "{body}: {detail}"
        );
    }
    // Only kited's own user may trade a bare request token.
    let mut stranger = post(path, r#"{"request_token":"abc"}"#);
    stranger.caller = Arc::new(Caller::known(false));
    assert_eq!(answer(&f.session, stranger).await.0, 403);
    // Not configured: the table says 503.
    let unconfigured = fixture::session(false, None, MORNING);
    let (status, _) = answer(
        &unconfigured.session,
        post(path, r#"{"request_token":"abc"}"#),
    )
    .await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn cross_origin_posts_and_preflights_are_refused() {
    let f = fixture::session(true, None, MORNING);
    let mut request = post(
        "/api/token/generate-access-token",
        r#"{"request_token":"abc"}"#,
    );
    request.headers.insert(
        header::ORIGIN,
        HeaderValue::from_static("http://evil.example"),
    );
    let (status, body) = answer(&f.session, request).await;
    assert_eq!(status, 403);
    assert!(body["detail"].as_str().unwrap().contains("origin"));
    let mut preflight = request_with_origin(Method::OPTIONS, "http://evil.example");
    preflight.path = "/api/token/status".into();
    assert_eq!(answer(&f.session, preflight).await.0, 403);
}

fn request_with_origin(method: Method, origin: &'static str) -> HttpRequest {
    let mut request = request(method, "/", true);
    request
        .headers
        .insert(header::ORIGIN, HeaderValue::from_static(origin));
    request
}

#[tokio::test]
async fn refresh_info_and_a_cancelled_callback() {
    let f = fixture::session(true, None, MORNING);
    let response = route(&f.session, get("/api/token/refresh-info")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let (_, body) = answer(&f.session, get("/api/token/refresh-info")).await;
    assert!(body["login_url"]
        .as_str()
        .unwrap()
        .contains("redirect_params=state"));
    assert_eq!(body["callback_url"], "http://127.0.0.1:8079/auth/callback");
    let page = route(&f.session, get("/auth/callback?status=cancelled")).await;
    assert_eq!(page.status(), 400);
    let unconfigured = fixture::session(false, None, MORNING);
    assert_eq!(
        answer(&unconfigured.session, get("/api/token/refresh-info"))
            .await
            .0,
        503
    );
}

#[test]
fn same_origin_uses_the_scheme_the_host_is_reached_by() {
    let mut map = HeaderMap::new();
    map.insert(header::HOST, HeaderValue::from_static("kited.test:8443"));
    assert!(is_same_origin("https://kited.test:8443", "https", &map));
    assert!(!is_same_origin("http://kited.test:8443", "https", &map));
    assert!(!is_same_origin("https://kited.test:8443", "http", &map));
}

#[test]
fn host_check() {
    let local: SocketAddr = "127.0.0.1:8079".parse().unwrap();
    let kind = |host: &str, public: Option<&str>| {
        let public = public.map(|p| public_url::PublicUrl::parse(p).unwrap());
        host_kind(&headers(&[("host", host)]), local, public.as_ref())
    };
    for good in ["127.0.0.1:8079", "localhost:8079"] {
        assert_eq!(kind(good, None), HostKind::Loopback, "{good}");
    }
    for bad in [
        "evil.com",
        "evil.com:8079",
        "127.0.0.1:80",
        "localhost",
        "127.0.0.1.evil.com:8079",
    ] {
        assert_eq!(kind(bad, None), HostKind::Foreign, "{bad}");
    }
    assert_eq!(host_kind(&HeaderMap::new(), local, None), HostKind::Foreign);
    assert_eq!(
        kind("kite.example.net", Some("https://kite.example.net")),
        HostKind::Public
    );
}
