//! The HTTP server: accepts connections, reads each request, logs it as a call, applies a
//! queued fault or routes it, and stamps every answer with the simulator's `Date`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::control::control;
use crate::faults::Fault;
use crate::reply::{into_response, Reply, SimBody};
use crate::request::ApiRequest;
use crate::routes::route;
use crate::state::{lock, Call, Shared};

/// Largest request body the simulator reads; more is answered 413.
const MAX_BODY: usize = 1024 * 1024;

pub(crate) async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of descriptors and the like: keep serving once the pressure is gone.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| dated(shared.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Every answer, control routes included, carries a `Date` header (RFC 7231's IMF-fixdate)
/// from the simulator's clock: the machine's plus the offset set with
/// [`Sim::set_date_offset`](crate::Sim::set_date_offset), so a client's clock check can be
/// made to pass or fail.
async fn dated(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let mut response = handle(shared.clone(), req).await?;
    let offset = lock(&shared).date_offset_secs;
    let now = chrono::Utc::now() + chrono::Duration::seconds(offset);
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(value) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(hyper::header::DATE, value);
    }
    Ok(response)
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let x_kite_version = header(&req, "x-kite-version");
    let authorization = header(&req, "authorization");
    let content_type = header(&req, "content-type");
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(into_response(Reply::error(
                413,
                "InputException",
                "Request body too large.",
            )))
        }
    };
    let incoming = ApiRequest {
        method,
        path,
        query,
        content_type,
        authorization,
        body,
    };

    if incoming.path.starts_with("/_sim/") {
        let reply = control(&shared, &incoming);
        return Ok(into_response(reply));
    }

    let (index, fault, log_calls) = {
        let mut state = lock(&shared);
        state.calls.push(Call {
            method: incoming.method.to_string(),
            path: incoming.path.clone(),
            query: incoming.query.clone(),
            body: String::from_utf8_lossy(&incoming.body).into_owned(),
            x_kite_version,
            authorization: incoming.authorization.clone(),
            content_type: incoming.content_type.clone(),
            status: None,
        });
        let fault = if incoming.path == "/connect/login" {
            None
        } else {
            state.faults.pop_front()
        };
        (state.calls.len() - 1, fault, state.log_calls)
    };
    let reply = match fault {
        None => route(&mut lock(&shared), &incoming),
        Some(Fault::Status(status)) => Reply::for_status(status),
        Some(Fault::Hang) => {
            if log_calls {
                eprintln!("kite-sim: {} {} -> (hangs)", incoming.method, incoming.path);
            }
            return std::future::pending().await;
        }
        Some(Fault::NonJson) => Reply::non_json(),
        Some(Fault::WrongContentType) => {
            let mut reply = route(&mut lock(&shared), &incoming);
            reply.content_type = "text/plain; charset=utf-8";
            reply
        }
        Some(Fault::Truncated) => Reply::truncated(),
    };
    {
        let mut state = lock(&shared);
        // The log may have been cleared meanwhile; only fill in the entry if it is still ours.
        if let Some(call) = state.calls.get_mut(index) {
            if call.path == incoming.path && call.status.is_none() {
                call.status = Some(reply.status);
            }
        }
    }
    if log_calls {
        eprintln!(
            "kite-sim: {} {} -> {}",
            incoming.method, incoming.path, reply.status
        );
    }
    Ok(into_response(reply))
}
