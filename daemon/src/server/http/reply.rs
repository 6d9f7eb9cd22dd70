//! Building HTTP answers: JSON bodies, the `{"detail": ...}` errors web dashboards expect, and the status for
//! a failed session operation (from the one table in `kite_proto`).

use crate::session::SessionError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

/// Every answer kited sends is whole: small pages, scripts and JSON.
pub type Body = Full<Bytes>;

/// The HTTP status for a failed session operation, from the one table in `kite_proto`.
pub fn error_status(error: &SessionError) -> StatusCode {
    StatusCode::from_u16(error.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    set_static(
        response.headers_mut(),
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    );
    response
}

/// Sets each header to its fixed value, in place of any it had.
pub fn set_static(
    headers: &mut HeaderMap,
    pairs: impl IntoIterator<Item = (HeaderName, &'static str)>,
) {
    for (name, value) in pairs {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// An error answer in the shape web dashboards read: `{"detail": "..."}`.
pub fn detail(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({"detail": message}))
}
