//! The HTTP server: hyper connections on the shared accept loop, with bounded headers, bodies
//! and read times, on `http.listen` and (when set) `http.public_listen`. Each request is read
//! into a plain [`HttpRequest`], marked with the listener it came in on, and answered by
//! [`crate::server::http::routes::route`].

pub(crate) mod page;
pub(crate) mod peer_uid;
pub(crate) mod public_listener;
pub(crate) mod reply;
pub(crate) mod request;
pub(crate) mod routes;
pub(crate) mod token_api;
pub(crate) mod trust;

use crate::server::http::peer_uid::Caller;
use crate::server::http::public_listener::PublicListener;
use crate::server::http::request::{BodyError, HttpRequest, Listener};
use crate::session::Session;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
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

/// Serves HTTP on `listener` until `shutdown`, at most `max_connections` at once; each
/// connection runs on its own task of `tasks`.
pub async fn serve(
    listener: TcpListener,
    max_connections: usize,
    session: Session,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let Ok(local) = listener.local_addr() else {
        tracing::error!("the HTTP listener has no address; not serving HTTP");
        return;
    };
    let stop = shutdown.clone();
    crate::server::accept::run(
        listener,
        "HTTP",
        max_connections,
        tasks,
        stop,
        move |(stream, peer)| {
            let caller = Caller::new(stream.local_addr().unwrap_or(local), peer);
            let on = Arrival {
                listener: Listener::Http,
                local,
                caller,
            };
            serve_connection(stream, on, session.clone(), shutdown.clone())
        },
    )
    .await;
}

/// Serves only the public routes on `http.public_listen` until `shutdown`, at most `max`
/// connections at once.
pub async fn serve_public(
    listener: PublicListener,
    max: usize,
    session: Session,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let stop = shutdown.clone();
    match listener {
        PublicListener::Tcp(listener) => {
            let Ok(local) = listener.local_addr() else {
                tracing::error!("the public listener has no address; not serving it");
                return;
            };
            let serve = move |(stream, peer): (tokio::net::TcpStream, SocketAddr)| {
                let on = Arrival {
                    listener: Listener::Public,
                    local,
                    caller: Caller::new(local, peer),
                };
                serve_connection(stream, on, session.clone(), shutdown.clone())
            };
            crate::server::accept::run(listener, "public HTTP", max, tasks, stop, serve).await;
        }
        PublicListener::Unix(listener, socket_file) => {
            let serve = move |(stream, _): (tokio::net::UnixStream, _)| {
                let on = Arrival {
                    listener: Listener::Public,
                    local: SocketAddr::from(([0, 0, 0, 0], 0)),
                    caller: Caller::stranger(),
                };
                serve_connection(stream, on, session.clone(), shutdown.clone())
            };
            crate::server::accept::run(listener, "public HTTP", max, tasks, stop, serve).await;
            // Only now, with the listener closed: removes the file if it is still ours.
            drop(socket_file);
        }
    }
}

/// Where a connection came in and who opened it.
struct Arrival {
    listener: Listener,
    /// The listener's address (`0.0.0.0:0` on a Unix socket, where no `Host` is checked).
    local: SocketAddr,
    caller: Caller,
}

/// One keep-alive connection. A stop lets the request in flight finish (an exchange may have
/// used up its request token at Kite already) and closes the connection after it.
async fn serve_connection<S>(stream: S, on: Arrival, session: Session, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (listener, local) = (on.listener, on.local);
    let caller = Arc::new(on.caller);
    let service = hyper::service::service_fn(move |request| {
        let session = session.clone();
        let caller = caller.clone();
        async move {
            let request = read_request(request, listener, local, caller).await;
            Ok::<_, std::convert::Infallible>(
                crate::server::http::routes::route(&session, request).await,
            )
        }
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

/// The plain request: the head as is, and a POST's body read whole (at most
/// [`MAX_BODY_BYTES`], within [`READ_TIMEOUT`]). Other methods' bodies are not read.
async fn read_request(
    request: Request<Incoming>,
    listener: Listener,
    local: SocketAddr,
    caller: Arc<Caller>,
) -> HttpRequest {
    let (head, body) = request.into_parts();
    let body = if head.method == Method::POST {
        read_body(&head.headers, body).await
    } else {
        Ok(Bytes::new())
    };
    HttpRequest {
        path: head.uri.path().to_string(),
        query: head.uri.query().unwrap_or("").to_string(),
        method: head.method,
        headers: head.headers,
        body,
        listener,
        local,
        caller,
    }
}

async fn read_body(headers: &HeaderMap, body: Incoming) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let limited = Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Unreadable),
        Err(_) => Err(BodyError::TooSlow),
    }
}
