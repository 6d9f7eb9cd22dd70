//! The routes' unit tests: every answer's status, detail and headers, over a real session
//! (`fixture`) and without a socket.

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
async fn unknown_routes_and_methods() {
    let f = fixture::session(true, None, MORNING);
    assert_eq!(answer(&f.session, get("/nope")).await.0, 404);
    assert_eq!(answer(&f.session, post("/healthz", "{}")).await.0, 405);
    assert_eq!(
        answer(&f.session, get("/api/token/generate-access-token"))
            .await
            .0,
        405
    );
    let page = route(&f.session, get("/")).await;
    assert_eq!(page.status(), 200);
    assert!(page.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
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

/// A session with `http.public_url = https://kite.example.com` and a valid token.
fn public_session() -> fixture::Fixture {
    fixture::session_with(
        true,
        Some(fixture::token(EXPIRES)),
        MORNING,
        &[("KITED_PUBLIC_URL", "https://kite.example.com")],
    )
}

/// The routes only the machine's own callers may reach, and one public route.
const LOOPBACK_ONLY: [(&str, &str); 5] = [
    ("GET", "/"),
    ("GET", "/api/token/status"),
    ("GET", "/api/token/refresh-info"),
    ("GET", "/api/token/callback-url"),
    ("POST", "/api/token/generate-access-token"),
];

fn loopback_only_request(method: &str, path: &str) -> HttpRequest {
    if method == "POST" {
        post(path, r#"{"request_token":"abc"}"#)
    } else {
        get(path)
    }
}

#[tokio::test]
async fn the_public_listener_serves_only_public_routes_whatever_the_host() {
    let f = public_session();
    for host in [
        "127.0.0.1:8079",
        "localhost:8079",
        "kite.example.com",
        "evil.example",
    ] {
        for (method, path) in LOOPBACK_ONLY {
            let mut request = loopback_only_request(method, path);
            request.listener = Listener::Public;
            request
                .headers
                .insert(header::HOST, HeaderValue::from_str(host).unwrap());
            assert_eq!(answer(&f.session, request).await.0, 404, "{host} {path}");
        }
        let mut health = get("/healthz");
        health.listener = Listener::Public;
        health
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        assert_eq!(answer(&f.session, health).await.0, 200, "{host}");
        // /login needs a ticket there, even with a loopback Host.
        let mut login = get("/login");
        login.listener = Listener::Public;
        login
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        assert_eq!(answer(&f.session, login).await.0, 403, "{host}");
    }
}

#[tokio::test]
async fn proxy_headers_never_reach_loopback_routes() {
    let f = public_session();
    for evidence in PROXY_EVIDENCE {
        for (method, path) in LOOPBACK_ONLY {
            // A loopback Host through a proxy: refused outright.
            let mut request = loopback_only_request(method, path);
            request
                .headers
                .insert(evidence, HeaderValue::from_static("203.0.113.9"));
            let (status, body) = answer(&f.session, request).await;
            assert_eq!(status, 421, "{evidence} {path}");
            assert!(!body.to_string().contains("AB1234"), "{body}");
            // The public host through a proxy: the public side.
            let mut request = loopback_only_request(method, path);
            request
                .headers
                .insert(evidence, HeaderValue::from_static("x"));
            request
                .headers
                .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
            assert_eq!(
                answer(&f.session, request).await.0,
                404,
                "{evidence} {path}"
            );
        }
        // /login with the public host through a proxy: the ticket is required.
        let mut login = get("/login");
        login
            .headers
            .insert(evidence, HeaderValue::from_static("x"));
        login
            .headers
            .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
        assert_eq!(answer(&f.session, login).await.0, 403, "{evidence}");
    }
    // Without public_url the same request is refused too.
    let plain = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
    let mut request = get("/api/token/status");
    request
        .headers
        .insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    assert_eq!(answer(&plain.session, request).await.0, 421);
    // And without evidence, loopback keeps every route (the check is not blanket).
    assert_eq!(answer(&f.session, get("/api/token/status")).await.0, 200);
    assert_eq!(answer(&f.session, get("/login")).await.0, 303);
}

#[tokio::test]
async fn a_peer_off_loopback_never_reaches_loopback_routes() {
    let f = public_session();
    let remote = || {
        Arc::new(Caller::new(
            "0.0.0.0:8079".parse().unwrap(),
            "192.0.2.7:40000".parse().unwrap(),
        ))
    };
    for (method, path) in LOOPBACK_ONLY {
        let mut request = loopback_only_request(method, path);
        request.caller = remote();
        assert_eq!(answer(&f.session, request).await.0, 421, "{path}");
        let mut request = loopback_only_request(method, path);
        request.caller = remote();
        request
            .headers
            .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
        assert_eq!(answer(&f.session, request).await.0, 404, "{path}");
    }
    let mut callback = get("/auth/callback?status=cancelled");
    callback.caller = remote();
    callback
        .headers
        .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
    assert_eq!(answer(&f.session, callback).await.0, 400);
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

/// A raw answer: status, headers and body text.
async fn raw(session: &Session, request: HttpRequest) -> (u16, HeaderMap, String) {
    let response = route(session, request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_page_and_its_assets_have_their_types_and_nosniff() {
    let f = fixture::session(true, None, MORNING);
    for (path, media) in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/kite-token-flow.js", "text/javascript"),
    ] {
        let (status, headers, _) = raw(&f.session, get(path)).await;
        assert_eq!(status, 200, "{path}");
        let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(media), "{path}: {content_type}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    let (_, _, js) = raw(&f.session, get("/static/kite-token-flow.js")).await;
    for name in [
        "KiteTokenFlow",
        "createTokenRefreshButton",
        "createTokenStatusIndicator",
        "ensureValidToken",
    ] {
        assert!(js.contains(name), "kite-token-flow.js lacks {name}");
    }
    // Unknown paths and wrong methods: 404 and 405, each with a detail.
    for (request, status) in [
        (get("/no/such/route"), 404),
        (post("/api/token/status", "{}"), 405),
        (get("/api/token/generate-access-token"), 405),
    ] {
        let (got, body) = answer(&f.session, request).await;
        assert_eq!(got, status);
        assert!(body["detail"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_post_needs_a_json_content_type() {
    let f = fixture::session(true, None, MORNING);
    let path = "/api/token/generate-access-token";
    let body = r#"{"request_token":"abcdef0123456789"}"#;
    let form = "request_token=abcdef0123456789";
    for (content_type, body) in [
        (None, body),
        (Some("text/plain"), body),
        (Some("text/plain;charset=UTF-8"), body),
        (Some("application/x-www-form-urlencoded"), form),
        (Some("multipart/form-data; boundary=x"), body),
        (Some("application/jsonp"), body),
    ] {
        let mut request = post(path, body);
        match content_type {
            Some(value) => request
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(value)),
            None => request.headers.remove(header::CONTENT_TYPE),
        };
        let (status, answer) = answer(&f.session, request).await;
        assert_eq!(status, 415, "{content_type:?}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("Failed to generate access token: ")
                && detail.contains("application/json"),
            "{content_type:?}: {detail}"
        );
    }
    // A charset parameter is fine: the request goes on to Kite (a closed port here, so it
    // fails there, but not for its type).
    let mut request = post(path, body);
    request.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let (status, answer) = answer(&f.session, request).await;
    assert_ne!(status, 415, "{answer}");
    assert!(
        !answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("application/json"),
        "{answer}"
    );
}

#[tokio::test]
async fn hosts_that_are_not_this_server_get_no_data() {
    let f = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
    let with_host = |mut request: HttpRequest, host: &str| {
        request
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        request
    };
    for host in [
        "evil.com:8079",
        "evil.com",
        "127.0.0.1:8080",
        "localhost:8080",
        "127.0.0.1:8079.evil.com",
        "evil.127.0.0.1:8079",
        "127.0.0.1",
        "localhost",
    ] {
        for request in [
            get("/api/token/status"),
            get("/"),
            post(
                "/api/token/generate-access-token",
                r#"{"request_token":"abcdef0123456789"}"#,
            ),
            get("/auth/callback?action=login&status=success&state=s&request_token=abc"),
        ] {
            let path = request.path.clone();
            let (status, _, body) = raw(&f.session, with_host(request, host)).await;
            assert!((400..500).contains(&status), "Host {host} {path}: {status}");
            assert!(!body.contains("AB1234"), "Host {host} {path} got data");
        }
    }
    let mut no_host = get("/api/token/status");
    no_host.headers.remove(header::HOST);
    assert_eq!(answer(&f.session, no_host).await.0, 421);
    for host in ["localhost:8079", "127.0.0.1:8079"] {
        let (status, body) = answer(&f.session, with_host(get("/api/token/status"), host)).await;
        assert_eq!(status, 200, "Host {host}");
        assert_eq!(body["user_id"], "AB1234");
    }
}

#[tokio::test]
async fn not_configured_answers_503_naming_what_is_missing() {
    let f = fixture::session(false, None, MORNING);
    let (status, body) = answer(&f.session, get("/api/token/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["configured"], false);
    assert_eq!(body["state"], "none");
    assert_eq!(body["valid"], false);
    assert_eq!(body["needs_refresh"], true);
    let (status, body) = answer(&f.session, get("/api/token/refresh-info")).await;
    assert_eq!(status, 503);
    assert!(
        body["detail"].as_str().unwrap().contains("KITE_API_KEY"),
        "{body}"
    );
    let (status, body) = answer(
        &f.session,
        post(
            "/api/token/generate-access-token",
            r#"{"request_token":"abcdef0123456789"}"#,
        ),
    )
    .await;
    assert_eq!(status, 503);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Failed to generate access token: ") && detail.contains("KITE_API_KEY"),
        "{detail}"
    );
    assert_eq!(answer(&f.session, get("/healthz")).await.0, 200);
    assert_eq!(
        answer(&f.session, get("/api/token/callback-url")).await.0,
        200
    );
}
