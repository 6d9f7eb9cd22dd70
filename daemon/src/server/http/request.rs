//! One HTTP request as the routes see it: a plain value (the head, and a POST's body already
//! read within bounds), so routes are functions of it and testable without a socket.

use crate::server::http::peer_uid::Caller;
use crate::server::http::reply::{detail, Body};
use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// One request as the routes see it.
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    /// The raw query string ("" when absent).
    pub query: String,
    pub headers: HeaderMap,
    /// The body of a POST, read whole before routing; why it could not be, otherwise.
    pub body: Result<Bytes, BodyError>,
    /// Which listener it came in on.
    pub listener: Listener,
    /// The listener's own address (what `Host` must name on loopback).
    pub local: SocketAddr,
    pub caller: Arc<Caller>,
}

/// The listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `http.listen`: every route for a loopback caller that names this server in `Host`.
    Http,
    /// `http.public_listen`: only the public routes, whatever `Host` says.
    Public,
}

/// Why a request's body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Over the size limit (declared or sent).
    TooLarge,
    /// Not sent within the read timeout.
    TooSlow,
    /// The connection broke while sending it.
    Unreadable,
}

impl BodyError {
    /// The answer for a route that needed the body.
    pub fn response(self) -> Response<Body> {
        match self {
            BodyError::TooLarge => detail(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
            BodyError::TooSlow => detail(StatusCode::REQUEST_TIMEOUT, "request body took too long"),
            BodyError::Unreadable => {
                detail(StatusCode::BAD_REQUEST, "could not read the request body")
            }
        }
    }
}
