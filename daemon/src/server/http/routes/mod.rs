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
mod tests;
