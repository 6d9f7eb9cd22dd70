//! Injected failures: what a queued [`Fault`] is, and the canned answers Kite (or a proxy in
//! front of it) would give for one.

use serde_json::json;

use crate::reply::Reply;

/// A misbehaviour for the next API call (any route but `/connect/login` and `/_sim/*`).
///
/// A fault answers instead of the route, without touching the simulator's state (no token is
/// consumed or minted), except [`Fault::WrongContentType`], which runs the route and only
/// mislabels its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// That status with Kite's envelope: 429/502/503 NetworkException (429 with
    /// `Retry-After: 1`), 500 GeneralException, 504 DataException, 403 TokenException,
    /// 400 InputException, others GeneralException.
    Status(u16),
    /// Accept the request and never answer (until the simulator stops).
    Hang,
    /// 200 with a `text/html` error page, as a misbehaving proxy would send.
    NonJson,
    /// The route's real answer, but labelled `text/plain`.
    WrongContentType,
    /// 200 JSON whose `Content-Length` is larger than the body; the connection then closes.
    Truncated,
}

impl Reply {
    /// The canned answer for an injected status, with the error type Kite uses for it.
    pub(crate) fn for_status(status: u16) -> Reply {
        let (error_type, message) = match status {
            400 => ("InputException", "Invalid input."),
            403 => ("TokenException", "Incorrect `api_key` or `access_token`."),
            429 => ("NetworkException", "Too many requests"),
            500 => ("GeneralException", "Internal server error"),
            502 => ("NetworkException", "Bad gateway"),
            503 => ("NetworkException", "Service unavailable"),
            504 => ("DataException", "Gateway timed out"),
            _ => ("GeneralException", "Unexpected error"),
        };
        let mut reply = Reply::error(status, error_type, message);
        if status == 429 {
            reply.headers.push(("retry-after", "1".into()));
        }
        reply
    }

    /// 200 with an HTML error page, for [`Fault::NonJson`].
    pub(crate) fn non_json() -> Reply {
        Reply::html(200, "502 Bad Gateway (injected by kite-sim)")
    }

    /// A success whose body stops short of its `Content-Length`, for [`Fault::Truncated`].
    pub(crate) fn truncated() -> Reply {
        let mut reply = Reply::success(json!({"note": "this body is cut short by kite-sim"}));
        reply.truncate = true;
        reply
    }
}
