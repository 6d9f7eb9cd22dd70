//! HTTP routing on a plain request value: [`route`] takes a parsed [`HttpRequest`] (its body
//! already read, within bounds) and returns the whole answer, so every route is testable without
//! a socket. The checks every route shares live here: which routes a request may reach (see
//! [`reach`]), CORS and the origin of POSTs.
//!
//! A request's reach is decided by how it arrived before what it says: the public listener is
//! the public side whatever `Host` says, and on `http.listen` a peer off loopback or a header
//! only a proxy adds makes the request a stranger's. `Host` (which any client, and any proxy
//! that passes or rewrites it, sets at will) can only narrow that further, never widen it.

use crate::config::public_url::{self, HostKind, PublicUrl};
use crate::server::http::page;
use crate::server::http::reply::{detail, json_response, set_static, Body};
use crate::server::http::request::{HttpRequest, Listener};
use crate::server::http::token_api;
use crate::session::Session;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use std::net::SocketAddr;

/// Dispatches one request after the checks every route shares.
pub async fn route(session: &Session, request: HttpRequest) -> Response<Body> {
    let config = session.config();
    let host = match reach(&request, config.public_url.as_ref()) {
        Ok(host) => host,
        Err(why) => return detail(StatusCode::MISDIRECTED_REQUEST, &why),
    };
    if host == HostKind::Public
        && !public_url::reaches_public(&request.method, &request.path, config.postbacks)
    {
        return detail(StatusCode::NOT_FOUND, "not found");
    }
    // The public host is reached through the TLS proxy: its pages' origin is https://HOST.
    let scheme = match (&config.public_url, host) {
        (Some(public), HostKind::Public) => public.scheme(),
        _ => "http",
    };
    let origin = request
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cors_origin = origin
        .as_deref()
        .filter(|o| config.allowed_origins.iter().any(|allowed| allowed == o))
        .map(str::to_string);
    let same_origin = origin
        .as_deref()
        .is_some_and(|o| is_same_origin(o, scheme, &request.headers));

    let mut response = if request.method == Method::OPTIONS {
        preflight(cors_origin.is_some(), &request.headers)
    } else if request.method == Method::POST
        && origin.is_some()
        && !same_origin
        && cors_origin.is_none()
        && request.path != "/kite/postback"
    {
        detail(
            StatusCode::FORBIDDEN,
            "origin not allowed (http.allowed_origins)",
        )
    } else if request.path == "/api/token/refresh-info"
        && crate::server::http::trust::from_foreign_page(
            &request.headers,
            same_origin || cors_origin.is_some(),
        )
    {
        // Each answer makes a login state; a foreign page must not push out the real ones.
        detail(
            StatusCode::FORBIDDEN,
            "origin not allowed (http.allowed_origins)",
        )
    } else {
        dispatch(session, host, &request).await
    };
    if let Some(origin) = cors_origin {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// Headers that only a proxy adds: a request carrying one came through a proxy, from whoever
/// reached that proxy, so it is never trusted as a local caller's.
pub const PROXY_EVIDENCE: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "via",
    "x-real-ip",
];

/// What this request may reach: every route ([`HostKind::Loopback`]), the public routes
/// ([`HostKind::Public`]), or nothing (the reason, answered 421).
///
/// - On the public listener: the public routes, whatever `Host` says.
/// - On `http.listen`, a `Host` that names neither this server nor the public host: nothing
///   (DNS rebinding, a stray proxy).
/// - A loopback `Host` from a loopback peer with no sign of a proxy: every route.
/// - A loopback `Host` that came through a proxy or from another machine: the public routes when
///   it names a loopback `http.public_url`, else nothing. Such a request is a stranger's, and a
///   stranger who names the loopback address is either a proxy that rewrites `Host` or an attack.
fn reach(request: &HttpRequest, public_url: Option<&PublicUrl>) -> Result<HostKind, String> {
    if request.listener == Listener::Public {
        return Ok(HostKind::Public);
    }
    match host_kind(&request.headers, request.local, public_url) {
        HostKind::Foreign => Err("unexpected Host header".into()),
        HostKind::Public => Ok(HostKind::Public),
        HostKind::Loopback => {
            let Some(why) = stranger_evidence(request) else {
                return Ok(HostKind::Loopback);
            };
            let host = request
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if public_url.is_some_and(|url| url.names(host)) {
                return Ok(HostKind::Public);
            }
            tracing::debug!("refused a request with a loopback Host that {why}");
            Err(format!(
                "this request {why}, but its Host names the loopback address: point the proxy \
                 at http.public_listen, or let it pass the public host's name through"
            ))
        }
    }
}

/// Why this request cannot be a local caller's: it came from another machine, or carries a
/// header only a proxy adds. `None` when there is no such sign.
fn stranger_evidence(request: &HttpRequest) -> Option<String> {
    if !request.caller.peer_is_loopback() {
        return Some("comes from another machine".into());
    }
    PROXY_EVIDENCE
        .iter()
        .find(|name| request.headers.contains_key(**name))
        .map(|name| format!("came through a proxy ({name})"))
}

/// The route table.
async fn dispatch(session: &Session, host: HostKind, request: &HttpRequest) -> Response<Body> {
    let caller = &request.caller;
    match (&request.method, request.path.as_str()) {
        (&Method::GET, "/healthz") => match session.store().failing() {
            None => json_response(StatusCode::OK, &json!({"ok": true})),
            // Why the store fails names local paths: for the machine's own callers only.
            Some(_) if host == HostKind::Public => {
                json_response(StatusCode::SERVICE_UNAVAILABLE, &json!({"ok": false}))
            }
            Some(why) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"ok": false, "detail": why}),
            ),
        },
        (&Method::GET, "/auth/callback") => {
            token_api::callback(session, &request.query, host).await
        }
        (&Method::GET, "/login") => {
            crate::session::login_link::serve(session, host, &request.query)
        }
        (&Method::GET, "/api/token/status") => {
            caller.resolve_owner().await;
            json_response(
                StatusCode::OK,
                &serde_json::to_value(crate::server::http::trust::status_for(session, caller))
                    .expect("status serializes"),
            )
        }
        (&Method::GET, "/api/token/callback-url") => json_response(
            StatusCode::OK,
            &json!({"callback_url": session.callback_url()}),
        ),
        (&Method::GET, "/api/token/refresh-info") => token_api::refresh_info(session),
        (&Method::POST, "/api/token/generate-access-token") => {
            caller.resolve_owner().await;
            match crate::server::http::trust::exchange_refusal(session, caller) {
                None => token_api::generate(session, request).await,
                Some(refusal) => refusal,
            }
        }
        (&Method::POST, "/kite/postback") if session.config().postbacks => {
            token_api::postback(session, request)
        }
        (&Method::GET, "/") => page::asset(page::Asset::Index),
        (&Method::GET, "/static/app.js") => page::asset(page::Asset::AppJs),
        (&Method::GET, "/static/app.css") => page::asset(page::Asset::AppCss),
        (&Method::GET, "/static/kite-token-flow.js") => page::asset(page::Asset::FlowJs),
        (&Method::GET, "/static/icon.svg" | "/favicon.ico") => page::asset(page::Asset::Icon),
        (
            _,
            "/healthz"
            | "/auth/callback"
            | "/login"
            | "/api/token/status"
            | "/api/token/callback-url"
            | "/api/token/refresh-info"
            | "/api/token/generate-access-token"
            | "/",
        ) => detail(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => detail(StatusCode::NOT_FOUND, "not found"),
    }
}

/// DNS-rebinding guard: `Host` must name this server exactly (loopback or the public host).
fn host_kind(
    headers: &HeaderMap,
    local: SocketAddr,
    public_url: Option<&public_url::PublicUrl>,
) -> HostKind {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    public_url::classify(host, local.port(), &local.to_string(), public_url)
}

fn is_same_origin(origin: &str, scheme: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin == format!("{scheme}://{host}")
}

fn preflight(allowed: bool, headers: &HeaderMap) -> Response<Body> {
    if !allowed {
        return detail(
            StatusCode::FORBIDDEN,
            "origin not allowed (http.allowed_origins)",
        );
    }
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    set_static(
        out,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, "Content-Type"),
            (header::ACCESS_CONTROL_MAX_AGE, "600"),
        ],
    );
    if headers.contains_key("access-control-request-private-network") {
        out.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
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
        let detail_of = |(status, body): (u16, Value)| {
            (status, body["detail"].as_str().unwrap_or("").to_string())
        };
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
}
