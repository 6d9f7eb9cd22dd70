//! What a route answers (`Reply`, Kite's success and error envelopes) and how it becomes a
//! hyper response, including the body that stops short for a truncation fault.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// What a route answers, before it becomes a hyper response.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: Bytes,
    pub(crate) truncate: bool,
}

impl Reply {
    pub(crate) fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: Bytes::from(value.to_string()),
            truncate: false,
        }
    }

    pub(crate) fn success(data: Value) -> Reply {
        Reply::json(200, json!({"status": "success", "data": data}))
    }

    /// Kite's error envelope.
    pub(crate) fn error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"status": "error", "message": message, "error_type": error_type, "data": null}),
        )
    }

    pub(crate) fn html(status: u16, text: &str) -> Reply {
        Reply {
            status,
            content_type: HTML,
            headers: Vec::new(),
            body: Bytes::from(format!(
                "<!DOCTYPE html><html><head><title>Kite Connect</title></head><body><p>{text}</p></body></html>\n"
            )),
            truncate: false,
        }
    }
}

pub(crate) fn token_exception(message: &str) -> Reply {
    Reply::error(403, "TokenException", message)
}

pub(crate) fn input_exception(message: &str) -> Reply {
    Reply::error(400, "InputException", message)
}

pub(crate) fn into_response(reply: Reply) -> Response<SimBody> {
    let body = if reply.truncate {
        let cut = reply.body.len() / 2;
        SimBody::Truncated {
            data: Some(reply.body.slice(..cut)),
            paused: false,
        }
    } else {
        SimBody::Full(Some(reply.body.clone()))
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if reply.truncate {
        // Announce the whole body plus more than will ever come.
        headers.insert(
            hyper::header::CONTENT_LENGTH,
            HeaderValue::from(reply.body.len() as u64 + 64),
        );
    }
    for (name, value) in reply.headers {
        let Ok(value) = HeaderValue::from_str(&value) else {
            continue;
        };
        match name {
            "location" => headers.insert(LOCATION, value),
            "retry-after" => headers.insert(RETRY_AFTER, value),
            other => headers.insert(other, value),
        };
    }
    response
}

/// A response body: whole, or (for [`Fault::Truncated`](crate::Fault::Truncated)) a part that
/// stops short of the announced `Content-Length`, which makes hyper close the connection.
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Truncated { data: Option<Bytes>, paused: bool },
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            SimBody::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Truncated { data, paused } => {
                if let Some(b) = data.take() {
                    Poll::Ready(Some(Ok(Frame::data(b))))
                } else if !*paused {
                    // Yield once so hyper flushes the head and the partial body to the socket
                    // before the short body ends and it drops the connection.
                    *paused = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(None)
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            // Unknown, so hyper honours the (too large) Content-Length header we set.
            SimBody::Truncated { .. } => SizeHint::default(),
        }
    }
}
