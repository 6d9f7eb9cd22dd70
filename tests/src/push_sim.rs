//! What the Telegram and ntfy simulators share: a loopback HTTP server on its own thread (so
//! synchronous tests can drive it) that records every request with the moment it arrived, and
//! a queue of faults that the next requests get instead of the service's real answer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::harness::POLL_INTERVAL;

/// Largest request body read; both services refuse far smaller messages.
const MAX_BODY: usize = 256 * 1024;

/// One request as the simulator received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When it arrived (for retry timing).
    pub at: Instant,
    /// The status answered; `None` for a request that was left hanging.
    pub status: Option<u16>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A misbehaviour for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFault {
    /// 429 with the service's flood-control answer; Telegram's says `retry_after` seconds.
    RateLimited { retry_after: u64 },
    /// That status with the service's error envelope (500, 502, 503, 401, 400, ...).
    Status(u16),
    /// Accept the request and never answer (until the simulator stops).
    Hang,
}

/// An answer: status, JSON body, extra headers.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

/// How a simulator answers: the service's real behaviour, and its answer to a fault.
pub trait Service: Send + Sync + 'static {
    fn route(&self, request: &Received) -> Answer;
    fn fault(&self, fault: PushFault) -> Answer;
}

struct Shared {
    requests: Vec<Received>,
    faults: VecDeque<PushFault>,
}

/// A running simulator server; clones share it, and it stops when the last one drops.
#[derive(Clone)]
pub struct SimServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    /// One worker thread serves every connection; dropping the runtime ends them all, hung
    /// requests included.
    _runtime: Arc<tokio::runtime::Runtime>,
}

impl SimServer {
    /// Serves `service` on `127.0.0.1:0`.
    pub fn start(name: &str, service: impl Service) -> SimServer {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).unwrap()
        };
        let shared = Arc::new(Mutex::new(Shared {
            requests: Vec::new(),
            faults: VecDeque::new(),
        }));
        runtime.spawn(accept_loop(listener, shared.clone(), Arc::new(service)));
        SimServer {
            addr,
            shared,
            _runtime: Arc::new(runtime),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` requests get `fault`.
    pub fn fault_next(&self, n: usize, fault: PushFault) {
        self.lock().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.lock().requests.clone()
    }

    /// Polls until at least `n` requests arrived that `matches` accepts; panics after
    /// `timeout`, listing what did arrive.
    pub fn wait_for(
        &self,
        n: usize,
        timeout: Duration,
        matches: impl Fn(&Received) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<Received> = self.requests().into_iter().filter(&matches).collect();
            if found.len() >= n {
                return found;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} requests; got {:#?}",
                    self.requests()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Headers as (lowercase name, value) pairs, in order.
pub fn header_pairs(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Mutex<Shared>>,
    service: Arc<dyn Service>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (shared, service) = (shared.clone(), service.clone());
        tokio::spawn(async move {
            let handler = service_fn(move |req| handle(shared.clone(), service.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    service: Arc<dyn Service>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers = header_pairs(req.headers());
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned())
        .unwrap_or_default();
    let received = Received {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
        status: None,
    };
    let (index, fault) = {
        let mut state = shared.lock().unwrap_or_else(|e| e.into_inner());
        state.requests.push(received.clone());
        (state.requests.len() - 1, state.faults.pop_front())
    };
    let answer = match fault {
        Some(PushFault::Hang) => return std::future::pending().await,
        Some(fault) => service.fault(fault),
        None => service.route(&received),
    };
    if let Some(slot) = shared
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .requests
        .get_mut(index)
    {
        slot.status = Some(answer.status);
    }
    let mut response = Response::new(Full::new(Bytes::from(answer.body.to_string())));
    *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let out = response.headers_mut();
    out.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (name, value) in answer.headers {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&value) {
            out.insert(name, value);
        }
    }
    Ok(response)
}
