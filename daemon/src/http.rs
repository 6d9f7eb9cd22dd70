//! The HTTP face on loopback: Kite's browser callback, the seed's token API, the page and its
//! scripts, health, login links, and (opt-in) Kite order postbacks. Behind a TLS proxy, the
//! public host reaches only the few routes a phone needs (see `public`).

use crate::page;
use crate::peer_uid::Caller;
use crate::public::{self, HostKind};
use crate::session::{Session, SessionError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use kite_proto::EventKind;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Request headers beyond this are answered 431: real browsers send 1-2 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Request bodies beyond this are answered 413: the largest real one is a pasted URL.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A client gets this long to send its headers, and again its body, so slow clients cannot
/// hold connections open (slowloris).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP connections; the UI needs a handful.
const MAX_CONNECTIONS: usize = 256;

pub type Body = Full<Bytes>;

/// Serves HTTP on `listener` until `shutdown`; each connection runs on its own task of `tasks`.
pub async fn serve(
    listener: TcpListener,
    session: Session,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let Ok(local) = listener.local_addr() else {
        tracing::error!("the HTTP listener has no address; not serving HTTP");
        return;
    };
    let stop = shutdown.clone();
    crate::accept::run(
        listener,
        "HTTP",
        MAX_CONNECTIONS,
        tasks,
        stop,
        move |(stream, peer)| {
            let caller = Caller::new(stream.local_addr().unwrap_or(local), peer);
            serve_connection(stream, local, caller, session.clone(), shutdown.clone())
        },
    )
    .await;
}

/// One keep-alive connection. A stop lets the request in flight finish (an exchange may have
/// used up its request token at Kite already) and closes the connection after it.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    local: SocketAddr,
    caller: Caller,
    session: Session,
    shutdown: CancellationToken,
) {
    let caller = Arc::new(caller);
    let service = hyper::service::service_fn(move |request| {
        let session = session.clone();
        let caller = caller.clone();
        async move { Ok::<_, std::convert::Infallible>(route(&session, local, &caller, request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Dispatches one request after the checks every route shares.
pub async fn route(
    session: &Session,
    local: SocketAddr,
    caller: &Caller,
    request: Request<Incoming>,
) -> Response<Body> {
    let config = session.config();
    let host = host_kind(request.headers(), local, config.public_url.as_ref());
    if host == HostKind::Foreign {
        return detail(StatusCode::MISDIRECTED_REQUEST, "unexpected Host header");
    }
    if host == HostKind::Public
        && !public::reaches_public(request.method(), request.uri().path(), config.postbacks)
    {
        return detail(StatusCode::NOT_FOUND, "not found");
    }
    // The public host is reached through the TLS proxy: its pages' origin is https://HOST.
    let scheme = match (&config.public_url, host) {
        (Some(public), HostKind::Public) => public.scheme(),
        _ => "http",
    };
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let cors_origin = origin
        .as_deref()
        .filter(|o| config.allowed_origins.iter().any(|allowed| allowed == o))
        .map(str::to_string);
    let same_origin = origin
        .as_deref()
        .is_some_and(|o| is_same_origin(o, scheme, request.headers()));

    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let mut response = if method == Method::OPTIONS {
        preflight(cors_origin.is_some(), request.headers())
    } else if method == Method::POST
        && origin.is_some()
        && !same_origin
        && cors_origin.is_none()
        && path != "/kite/postback"
    {
        detail(
            StatusCode::FORBIDDEN,
            "origin not allowed (http.allowed_origins)",
        )
    } else {
        dispatch(session, caller, host, &method, &path, request).await
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

async fn dispatch(
    session: &Session,
    caller: &Caller,
    host: HostKind,
    method: &Method,
    path: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/healthz") => match session.store().failing() {
            None => json_response(StatusCode::OK, &json!({"ok": true})),
            Some(why) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"ok": false, "detail": why}),
            ),
        },
        (&Method::GET, "/auth/callback") => {
            let query = request.uri().query().unwrap_or("").to_string();
            callback(session, &query, host).await
        }
        (&Method::GET, "/login") => {
            crate::login_link::serve(session, host, request.uri().query().unwrap_or(""))
        }
        (&Method::GET, "/api/token/status") => json_response(
            StatusCode::OK,
            &serde_json::to_value(crate::http_trust::status_for(session, caller))
                .expect("status serializes"),
        ),
        (&Method::GET, "/api/token/callback-url") => json_response(
            StatusCode::OK,
            &json!({"callback_url": session.callback_url()}),
        ),
        (&Method::GET, "/api/token/refresh-info") => refresh_info(session),
        (&Method::POST, "/api/token/generate-access-token") => {
            match crate::http_trust::exchange_refusal(session, caller) {
                None => generate(session, request).await,
                Some(refusal) => refusal,
            }
        }
        (&Method::POST, "/kite/postback") if session.config().postbacks => {
            postback(session, request).await
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
    public_url: Option<&public::PublicUrl>,
) -> HostKind {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    public::classify(host, local.port(), &local.to_string(), public_url)
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
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    out.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    if headers.contains_key("access-control-request-private-network") {
        out.insert(
            "access-control-allow-private-network",
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// Kite's redirect: check, exchange, then a small page saying what happened.
async fn callback(session: &Session, query: &str, host: HostKind) -> Response<Body> {
    let home_link = host == HostKind::Loopback;
    match session.complete_callback(query).await {
        Ok(record) => {
            let message = format!(
                "Logged in as {} — you can close this tab.",
                record.display_name()
            );
            let details =
                vec![
                format!("The token is valid until {}.", human_time(&record.expires_at)),
                "kited stored it: programs get it with `kitectl get-token` (no restart needed)."
                    .to_string(),
            ];
            page::callback_page(
                StatusCode::OK,
                &page::CallbackOutcome {
                    title: "Logged in",
                    message: &message,
                    details: &details,
                    home_link,
                },
            )
        }
        Err(e) => {
            tracing::warn!("browser callback failed: {e}");
            let status = error_status(&e);
            let again = if home_link {
                "Start again from the kited page (Log in with Kite), or run \
                 `kitectl login --open`."
            } else {
                "Start again from a new login link: tap Log in on the newest kited message, or \
                 run `kitectl login --link` on the machine running kited."
            };
            let details = vec![format!("No new token was stored. {again}")];
            page::callback_page(
                status,
                &page::CallbackOutcome {
                    title: "Login failed",
                    message: &sentence(&e.to_string()),
                    details: &details,
                    home_link,
                },
            )
        }
    }
}

/// The message with a capital first letter, as the page's headline.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `2026-11-24T06:00:00+05:30` → `06:00 IST on Tue 24 Nov 2026` (the text as is otherwise).
fn human_time(rfc3339: &str) -> String {
    match crate::clock::parse_rfc3339(rfc3339) {
        Some(t) => t.format("%H:%M IST on %a %-d %b %Y").to_string(),
        None => rfc3339.to_string(),
    }
}

fn refresh_info(session: &Session) -> Response<Body> {
    match session.login_url() {
        Ok((login_url, callback_url)) => {
            let mut response = json_response(
                StatusCode::OK,
                &json!({
                    "login_url": login_url,
                    "callback_url": callback_url,
                    "instructions": format!(
                        "Open login_url and log in to Kite. Kite redirects to {callback_url} and kited stores \
                         the new token by itself. If that redirect cannot reach this machine, paste the \
                         redirected URL into the kited page or run `kitectl exchange` and paste it there."
                    ),
                }),
            );
            // The URL carries a single-use state: never cache it.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => detail(error_status(&e), &e.to_string()),
    }
}

/// The seed's `POST /api/token/generate-access-token`.
async fn generate(session: &Session, request: Request<Incoming>) -> Response<Body> {
    let fail = |status: StatusCode, why: &str| {
        detail(status, &format!("Failed to generate access token: {why}"))
    };
    if !is_json(request.headers()) {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) => return fail(StatusCode::BAD_REQUEST, "the body is not valid JSON"),
    };
    let token = match value.get("request_token") {
        None | Some(Value::Null) => {
            return fail(StatusCode::BAD_REQUEST, "request_token is required")
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return fail(StatusCode::BAD_REQUEST, "request_token is empty")
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return fail(StatusCode::BAD_REQUEST, "request_token must be a string"),
    };
    match session.exchange_pasted(&token).await {
        Ok(record) => {
            let mut response = json_response(
                StatusCode::OK,
                &json!({
                    "success": true,
                    "access_token": record.access_token.expose(),
                    "user_id": record.user_id,
                    "user_name": record.user_name,
                    "user_shortname": record.user_shortname,
                    "email": record.email,
                    "user_type": record.user_type,
                    "broker": record.broker,
                    "exchanges": record.exchanges,
                    "products": record.products,
                    "order_types": record.order_types,
                    "expires_at": record.expires_at,
                    "message": "Access token generated successfully. kited stored it: programs get it with `kitectl get-token`.",
                    "instructions": "No restart needed: run programs with `kitectl exec -- CMD`, or read the token with `kitectl get-token`.",
                }),
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => fail(error_status(&e), &e.to_string()),
    }
}

/// Kite's order postback: raw JSON body whatever the Content-Type, checksum verified.
async fn postback(session: &Session, request: Request<Incoming>) -> Response<Body> {
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Ok(order) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::BAD_REQUEST, "postback body is not JSON");
    };
    let field = |name: &str| order.get(name).and_then(Value::as_str).unwrap_or("");
    let config = session.config();
    let Some(secret) = config.api_secret.as_ref() else {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "no api secret configured");
    };
    let expected = kite_proto::checksum::postback_checksum(
        field("order_id"),
        field("order_timestamp"),
        secret.expose(),
    );
    if field("order_id").is_empty()
        || !kite_proto::checksum::checksums_match(&expected, field("checksum"))
    {
        tracing::warn!("rejected a postback with a bad checksum");
        return detail(StatusCode::FORBIDDEN, "postback checksum does not match");
    }
    session.events().emit(EventKind::OrderUpdate { order });
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// The HTTP status for a failed session operation, from the one table in `kite_proto`.
fn error_status(error: &SessionError) -> StatusCode {
    StatusCode::from_u16(error.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads a body of at most [`MAX_BODY_BYTES`] within [`READ_TIMEOUT`].
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let limited = Limited::new(request.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(detail(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        )),
        Ok(Err(_)) => Err(detail(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
        Err(_) => Err(detail(
            StatusCode::REQUEST_TIMEOUT,
            "request body took too long",
        )),
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An error answer in the seed's shape: `{"detail": "..."}`.
pub fn detail(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({"detail": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn host_check() {
        let local: SocketAddr = "127.0.0.1:8079".parse().unwrap();
        let kind = |host: &str, public: Option<&str>| {
            let public = public.map(|p| public::PublicUrl::parse(p).unwrap());
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

    #[test]
    fn json_content_type() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
