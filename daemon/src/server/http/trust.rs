//! Which HTTP callers may see what: routes that hand out a token, or reveal whose account it
//! is, serve only loopback connections opened by the uid kited runs as.
//!
//! The browser callback stays open to everyone: its single-use `state` protects it, and a
//! reverse proxy in front of kited runs as another user. A bare request token carries no such
//! proof, and another local user can read one from `ps` the moment it is typed on a command
//! line, so exchanging one (`POST /api/token/generate-access-token`) is kited's own user's alone.

use crate::server::http::peer_uid::Caller;
use crate::server::http::reply::{detail, Body};
use crate::session::Session;
use hyper::header::{self, HeaderMap};
use hyper::{Response, StatusCode};
use kite_proto::TokenStatus;

/// The status for this caller: without the user and the api key unless it is kited's own user.
pub fn status_for(session: &Session, caller: &Caller) -> TokenStatus {
    let mut status = session.status();
    if !caller.is_own_user() {
        status.user_id = None;
        status.user_name = None;
        status.api_key = None;
        // Whether a sink works, not where it points.
        for sink in &mut status.sinks {
            sink.error = None;
        }
    }
    status
}

/// The refusal, when this caller may not exchange a bare request token over HTTP.
pub fn exchange_refusal(session: &Session, caller: &Caller) -> Option<Response<Body>> {
    let refuse = |why: &str| {
        Some(detail(
            StatusCode::FORBIDDEN,
            &format!("Failed to generate access token: {why}"),
        ))
    };
    if !session.config().exchange_api {
        return refuse(
            "the JSON exchange is turned off (http.exchange_api = false); log in through the \
             browser callback or use `kitectl exchange`",
        );
    }
    if !caller.is_own_user() {
        tracing::warn!(
            peer = %caller.peer(),
            "refused an HTTP token exchange from another user"
        );
        return refuse(
            "only the user kited runs as may exchange tokens over HTTP; log in through the \
             browser callback or use `kitectl exchange`",
        );
    }
    None
}

/// Whether a browser sent this request for a page of another origin that is not in
/// `http.allowed_origins`: a foreign `Origin`, or `Sec-Fetch-Site` saying so (an `<img>` or a
/// script sends no `Origin`). `trusted_origin`: the `Origin` is this server's or allowed.
pub fn from_foreign_page(headers: &HeaderMap, trusted_origin: bool) -> bool {
    if trusted_origin {
        return false;
    }
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    headers.contains_key(header::ORIGIN) || matches!(fetch_site, "cross-site" | "same-site")
}
