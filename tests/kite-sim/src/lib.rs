//! kite-sim: a loopback Kite Connect API that behaves as Kite's public API documentation says
//! Kite does: the browser login, the checksummed single-use request-token exchange, profile,
//! logout and renewal, the error envelope with `Content-Type: application/json`, plus fault
//! injection and a call log.
//!
//! The server runs on its own tokio runtime in a background thread, so plain synchronous
//! `#[test]` functions can drive it; every method here is synchronous. `Sim` is a cheap handle:
//! clones share one server, which stops (and its thread is joined) when the last clone drops.
//!
//! Control routes under `/_sim/` let other processes (and the `kite-sim` binary's users) do what
//! the methods do; they are neither logged as calls nor subject to faults.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kite_proto::checksum::{checksums_match, refresh_checksum, session_checksum};
use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// The api key a default [`SimConfig`] accepts (16 lowercase alphanumerics, like Kite's).
pub const DEFAULT_API_KEY: &str = "kitedtestkey0001";
/// The api secret a default [`SimConfig`] checks checksums with.
pub const DEFAULT_API_SECRET: &str = "simsecret-0123456789abcdef";

/// Largest request body the simulator reads; more is answered 413.
const MAX_BODY: usize = 1024 * 1024;

const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// Who the simulated Kite app and user are.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub api_key: String,
    pub api_secret: String,
    pub user_id: String,
    pub user_name: String,
    /// The redirect URL registered on the "developer console"; logins fail 400 without one.
    pub redirect_url: Option<String>,
    /// How long an issued request token may still be exchanged.
    pub request_token_ttl: Duration,
    /// Print one line per request to stderr (the `kite-sim` binary turns this on).
    pub log_calls: bool,
    /// Seconds added to the machine's clock in every answer's `Date` header (negative: behind).
    pub date_offset_secs: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: DEFAULT_API_KEY.into(),
            api_secret: DEFAULT_API_SECRET.into(),
            user_id: "AB1234".into(),
            user_name: "Kite Tester".into(),
            redirect_url: None,
            request_token_ttl: Duration::from_secs(5 * 60),
            log_calls: false,
            date_offset_secs: 0,
        }
    }
}

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

/// One request the simulator received (control routes excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The raw query string ("" when absent).
    pub query: String,
    /// The raw body, lossily decoded as UTF-8.
    pub body: String,
    pub x_kite_version: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The status answered; `None` while unanswered (or never, for [`Fault::Hang`]).
    pub status: Option<u16>,
}

impl Call {
    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        pair(&self.query, name)
    }

    /// A decoded form-body parameter.
    pub fn form_param(&self, name: &str) -> Option<String> {
        pair(&self.body, name)
    }
}

fn pair(encoded: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(encoded.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A running simulator. See the module docs.
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
    _server: Arc<ServerThread>,
}

struct Shared {
    addr: SocketAddr,
    state: Mutex<State>,
}

struct ServerThread {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug, Clone)]
struct User {
    user_id: String,
    user_name: String,
}

struct RequestToken {
    user: User,
    issued: Instant,
    used: bool,
}

struct Session {
    user: User,
}

struct State {
    api_key: String,
    api_secret: String,
    user: User,
    redirect_url: Option<String>,
    cancel: bool,
    ttl: Duration,
    login_time: Option<String>,
    issue_refresh_tokens: bool,
    /// The access token the next session gets instead of a random one.
    next_access_token: Option<String>,
    log_calls: bool,
    request_tokens: HashMap<String, RequestToken>,
    /// Live access tokens only: killing one removes it.
    access_tokens: HashMap<String, Session>,
    /// When each session was minted, just before its answer left: the "exchange's answer" that
    /// latency benchmarks measure from.
    minted_at: HashMap<String, SystemTime>,
    refresh_tokens: HashMap<String, User>,
    faults: VecDeque<Fault>,
    calls: Vec<Call>,
    /// Seconds added to the machine's clock in every `Date` header.
    date_offset_secs: i64,
}

impl Sim {
    /// Starts a simulator on `127.0.0.1:0` (a free port). Panics if it cannot bind.
    pub fn start(config: SimConfig) -> Sim {
        Sim::start_on("127.0.0.1:0", config).expect("kite sim: cannot bind 127.0.0.1:0")
    }

    /// Starts a simulator on a chosen address (port 0 picks a free one).
    pub fn start_on(addr: impl ToSocketAddrs, config: SimConfig) -> io::Result<Sim> {
        let listener = StdTcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared {
            addr,
            state: Mutex::new(State::new(config)),
        });
        let (tx, rx) = oneshot::channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("kite-sim-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = accept_loop(listener, server_shared) => {}
                        _ = rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task, hung ones included.
                drop(runtime);
            })?;
        Ok(Sim {
            shared,
            _server: Arc::new(ServerThread {
                shutdown: Some(tx),
                thread: Some(thread),
            }),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`, to use as `KITE_API_ROOT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// `url()/connect/login`, to use as `KITE_LOGIN_URL`.
    pub fn login_url(&self) -> String {
        format!("{}/connect/login", self.url())
    }

    pub fn api_key(&self) -> String {
        self.state().api_key.clone()
    }

    pub fn api_secret(&self) -> String {
        self.state().api_secret.clone()
    }

    /// The redirect URL registered on the "developer console".
    pub fn set_redirect_url(&self, url: &str) {
        self.state().redirect_url = Some(url.to_string());
    }

    pub fn redirect_url(&self) -> Option<String> {
        self.state().redirect_url.clone()
    }

    /// While on, logins redirect with only `?status=cancelled`.
    pub fn set_cancel(&self, on: bool) {
        self.state().cancel = on;
    }

    /// Who the next logins belong to.
    pub fn set_user(&self, user_id: &str, user_name: &str) {
        self.state().user = User {
            user_id: user_id.into(),
            user_name: user_name.into(),
        };
    }

    /// A fresh request token, as a human login would produce (for headless exchange tests).
    pub fn issue_request_token(&self) -> String {
        self.state().issue_request_token()
    }

    /// How long request tokens stay exchangeable from now on (tokens already issued included).
    pub fn set_request_token_ttl(&self, ttl: Duration) {
        self.state().ttl = ttl;
    }

    /// The next `n` API calls answer `status` with Kite's envelope.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.set_fault(n, Fault::Status(status));
    }

    /// Queues `fault` for the next `n` API calls, after any faults already queued.
    pub fn set_fault(&self, n: usize, fault: Fault) {
        self.state().faults.extend(std::iter::repeat_n(fault, n));
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Kite killed this access token early: profile and logout now answer 403 TokenException.
    pub fn kill_access_token(&self, token: &str) {
        self.state().access_tokens.remove(token);
    }

    /// Kills every live access token (a master logout on Kite web).
    pub fn kill_all_access_tokens(&self) {
        self.state().access_tokens.clear();
    }

    /// `login_time` ("YYYY-MM-DD HH:MM:SS", IST) reported by the following exchanges and
    /// renewals; `None` goes back to the current time in Asia/Kolkata.
    pub fn set_login_time(&self, t: Option<String>) {
        self.state().login_time = t;
    }

    /// The next exchange or renewal answers with this access token instead of a random one, as
    /// a broken or hostile Kite (or something between kited and Kite) might.
    pub fn set_next_access_token(&self, token: &str) {
        self.state().next_access_token = Some(token.to_string());
    }

    /// Whether exchanges issue a non-empty `refresh_token` (default off, like ordinary apps).
    pub fn set_refresh_tokens(&self, on: bool) {
        self.state().issue_refresh_tokens = on;
    }

    /// When the session holding `access_token` was minted (its answer left right after).
    pub fn minted_at(&self, access_token: &str) -> Option<SystemTime> {
        self.state().minted_at.get(access_token).copied()
    }

    /// Every request received so far, oldest first (control routes excluded).
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The calls to one path.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.method == method && c.path == path)
            .cloned()
            .collect()
    }

    /// Forgets the call log.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Moves the simulator's clock, as its `Date` headers tell it, `secs` from the machine's.
    pub fn set_date_offset(&self, secs: i64) {
        lock(&self.shared).date_offset_secs = secs;
    }

    /// Access tokens Kite would accept right now.
    pub fn valid_access_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self.state().access_tokens.keys().cloned().collect();
        tokens.sort();
        tokens
    }

    /// Refresh tokens Kite would accept right now.
    pub fn valid_refresh_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self.state().refresh_tokens.keys().cloned().collect();
        tokens.sort();
        tokens
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not wedge the server: the state stays usable.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn now_ist() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

impl State {
    fn new(config: SimConfig) -> State {
        State {
            api_key: config.api_key,
            api_secret: config.api_secret,
            user: User {
                user_id: config.user_id,
                user_name: config.user_name,
            },
            redirect_url: config.redirect_url,
            cancel: false,
            ttl: config.request_token_ttl,
            login_time: None,
            issue_refresh_tokens: false,
            next_access_token: None,
            log_calls: config.log_calls,
            minted_at: HashMap::new(),
            request_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            faults: VecDeque::new(),
            calls: Vec::new(),
            date_offset_secs: config.date_offset_secs,
        }
    }

    fn issue_request_token(&mut self) -> String {
        let token = random_token(32);
        self.request_tokens.insert(
            token.clone(),
            RequestToken {
                user: self.user.clone(),
                issued: Instant::now(),
                used: false,
            },
        );
        token
    }

    /// Mints an access token for `user`; the JSON `data` of a session answer.
    fn new_session(&mut self, user: &User, refresh_token: Option<String>) -> Value {
        let access_token = self
            .next_access_token
            .take()
            .unwrap_or_else(|| random_token(32));
        self.access_tokens
            .insert(access_token.clone(), Session { user: user.clone() });
        self.minted_at
            .insert(access_token.clone(), SystemTime::now());
        let refresh_token = match refresh_token {
            Some(t) => t,
            None if self.issue_refresh_tokens => {
                let t = random_token(32);
                self.refresh_tokens.insert(t.clone(), user.clone());
                t
            }
            None => String::new(),
        };
        let login_time = self.login_time.clone().unwrap_or_else(now_ist);
        let mut data = profile_data(user);
        let extra = json!({
            "api_key": self.api_key,
            "access_token": access_token,
            "public_token": random_token(32),
            "enctoken": random_token(64),
            "refresh_token": refresh_token,
            "silo": "",
            "login_time": login_time,
        });
        if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
            data.extend(extra);
        }
        data
    }
}

/// The `data` of `GET /user/profile` (mocks/profile.json) for `user`.
fn profile_data(user: &User) -> Value {
    let shortname = user
        .user_name
        .split_whitespace()
        .next()
        .unwrap_or(&user.user_name);
    json!({
        "user_id": user.user_id,
        "user_type": "individual",
        "email": format!("{}@example.com", user.user_id.to_ascii_lowercase()),
        "user_name": user.user_name,
        "user_shortname": shortname,
        "broker": "ZERODHA",
        "exchanges": ["BFO", "MCX", "NSE", "CDS", "BSE", "BCD", "MF", "NFO"],
        "products": ["CNC", "NRML", "MIS", "BO", "CO"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": null,
        "meta": {"demat_consent": "physical"},
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
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

/// What a route answers, before it becomes a hyper response.
struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
    truncate: bool,
}

impl Reply {
    fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: Bytes::from(value.to_string()),
            truncate: false,
        }
    }

    fn success(data: Value) -> Reply {
        Reply::json(200, json!({"status": "success", "data": data}))
    }

    /// Kite's error envelope.
    fn error(status: u16, error_type: &str, message: &str) -> Reply {
        Reply::json(
            status,
            json!({"status": "error", "message": message, "error_type": error_type, "data": null}),
        )
    }

    fn html(status: u16, text: &str) -> Reply {
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

    /// The canned answer for an injected status, with the error type Kite uses for it.
    fn for_status(status: u16) -> Reply {
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
}

fn token_exception(message: &str) -> Reply {
    Reply::error(403, "TokenException", message)
}

fn input_exception(message: &str) -> Reply {
    Reply::error(400, "InputException", message)
}

const BAD_ACCESS_TOKEN: &str = "Incorrect `api_key` or `access_token`.";
const BAD_TOKEN: &str = "Token is invalid or has expired.";
const SHORT_API_KEY: &str = "`api_key` should be minimum 6 characters in length.";

/// The parts of a request the routes look at.
struct ApiRequest {
    method: Method,
    path: String,
    query: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Bytes,
}

impl ApiRequest {
    fn query_pairs(&self) -> HashMap<String, String> {
        first_values(self.query.as_bytes())
    }

    /// The form body, or nothing when the body is not form-encoded (Kite ignores JSON bodies).
    fn form(&self) -> HashMap<String, String> {
        let is_form = self.content_type.as_deref().is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if is_form {
            first_values(&self.body)
        } else {
            HashMap::new()
        }
    }
}

fn first_values(encoded: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(encoded) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Every answer, control routes included, carries a `Date` header (RFC 7231's IMF-fixdate)
/// from the simulator's clock: the machine's plus the offset set with
/// [`Sim::set_date_offset`], so a client's clock check can be made to pass or fail.
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
        Some(Fault::NonJson) => Reply::html(200, "502 Bad Gateway (injected by kite-sim)"),
        Some(Fault::WrongContentType) => {
            let mut reply = route(&mut lock(&shared), &incoming);
            reply.content_type = "text/plain; charset=utf-8";
            reply
        }
        Some(Fault::Truncated) => {
            let mut reply = Reply::success(json!({"note": "this body is cut short by kite-sim"}));
            reply.truncate = true;
            reply
        }
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

fn route(state: &mut State, req: &ApiRequest) -> Reply {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/connect/login") => login(state, req),
        (&Method::POST, "/session/token") => exchange(state, req),
        (&Method::DELETE, "/session/token") => logout(state, req),
        (&Method::GET, "/user/profile") => profile(state, req),
        (&Method::POST, "/session/refresh_token") => renew(state, req),
        (_, "/session/token" | "/user/profile" | "/session/refresh_token") => {
            Reply::error(405, "GeneralException", "Method not allowed.")
        }
        _ => Reply::error(404, "GeneralException", "Route not found."),
    }
}

/// `GET /connect/login`: a human who logs in and approves (or cancels).
fn login(state: &mut State, req: &ApiRequest) -> Reply {
    let query = req.query_pairs();
    if query.get("api_key") != Some(&state.api_key) {
        return Reply::html(400, "Invalid `api_key`.");
    }
    let Some(redirect) = state.redirect_url.clone() else {
        return Reply::html(
            400,
            "This app has no redirect URL: set one on the developer console.",
        );
    };
    let Ok(mut location) = url::Url::parse(&redirect) else {
        return Reply::html(400, "This app's redirect URL is invalid.");
    };
    if state.cancel {
        location
            .query_pairs_mut()
            .append_pair("status", "cancelled");
    } else {
        let token = state.issue_request_token();
        let mut pairs = location.query_pairs_mut();
        pairs
            .append_pair("action", "login")
            .append_pair("type", "login")
            .append_pair("status", "success")
            .append_pair("request_token", &token);
        if let Some(extra) = query.get("redirect_params") {
            for (k, v) in url::form_urlencoded::parse(extra.as_bytes()) {
                pairs.append_pair(&k, &v);
            }
        }
    }
    let mut reply = Reply::html(302, "Redirecting");
    reply.headers.push(("location", location.to_string()));
    reply
}

/// Checks the api key of a form or query; `Err` is the answer to give.
fn check_api_key(state: &State, api_key: Option<&String>) -> Result<(), Reply> {
    match api_key {
        Some(key) if key.len() >= 6 => {
            if *key == state.api_key {
                Ok(())
            } else {
                Err(token_exception("Invalid `api_key`."))
            }
        }
        _ => Err(input_exception(SHORT_API_KEY)),
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Reply> {
    match form.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(input_exception(&format!(
            "Missing or empty field `{name}`."
        ))),
    }
}

/// `POST /session/token`.
fn exchange(state: &mut State, req: &ApiRequest) -> Reply {
    let form = req.form();
    let result = (|| {
        check_api_key(state, form.get("api_key"))?;
        let request_token = required(&form, "request_token")?;
        let checksum = required(&form, "checksum")?;
        let expected = session_checksum(&state.api_key, request_token, &state.api_secret);
        if !checksums_match(&expected, checksum) {
            return Err(token_exception("Invalid `checksum`."));
        }
        let ttl = state.ttl;
        let user = match state.request_tokens.get_mut(request_token) {
            Some(t) if !t.used && t.issued.elapsed() < ttl => {
                t.used = true;
                t.user.clone()
            }
            _ => return Err(token_exception(BAD_TOKEN)),
        };
        Ok(Reply::success(state.new_session(&user, None)))
    })();
    result.unwrap_or_else(|reply| reply)
}

/// `DELETE /session/token?api_key&access_token|refresh_token`.
fn logout(state: &mut State, req: &ApiRequest) -> Reply {
    let query = req.query_pairs();
    if let Err(reply) = check_api_key(state, query.get("api_key")) {
        return reply;
    }
    let access = query.get("access_token").filter(|t| !t.is_empty());
    let refresh = query.get("refresh_token").filter(|t| !t.is_empty());
    match (access, refresh) {
        (Some(token), _) => match state.access_tokens.remove(token) {
            Some(_) => Reply::success(json!(true)),
            None => token_exception(BAD_ACCESS_TOKEN),
        },
        (None, Some(token)) => match state.refresh_tokens.remove(token) {
            Some(_) => Reply::success(json!(true)),
            None => token_exception(BAD_TOKEN),
        },
        (None, None) => input_exception("Missing or empty field `access_token`."),
    }
}

/// `GET /user/profile` with `Authorization: token api_key:access_token`.
fn profile(state: &mut State, req: &ApiRequest) -> Reply {
    let credentials = req.authorization.as_deref().and_then(|value| {
        let (scheme, rest) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("token") {
            return None;
        }
        rest.trim().split_once(':')
    });
    match credentials {
        Some((api_key, token)) if api_key == state.api_key => {
            match state.access_tokens.get(token) {
                Some(session) => Reply::success(profile_data(&session.user)),
                None => token_exception(BAD_ACCESS_TOKEN),
            }
        }
        _ => token_exception(BAD_ACCESS_TOKEN),
    }
}

/// `POST /session/refresh_token`: renews an access token without a login.
fn renew(state: &mut State, req: &ApiRequest) -> Reply {
    let form = req.form();
    let result = (|| {
        check_api_key(state, form.get("api_key"))?;
        let refresh_token = required(&form, "refresh_token")?;
        let checksum = required(&form, "checksum")?;
        let expected = refresh_checksum(&state.api_key, refresh_token, &state.api_secret);
        if !checksums_match(&expected, checksum) {
            return Err(token_exception("Invalid `checksum`."));
        }
        let Some(user) = state.refresh_tokens.get(refresh_token).cloned() else {
            return Err(token_exception(BAD_TOKEN));
        };
        Ok(Reply::success(
            state.new_session(&user, Some(refresh_token.to_string())),
        ))
    })();
    result.unwrap_or_else(|reply| reply)
}

/// `/_sim/*`: the control surface for other processes and humans.
fn control(shared: &Shared, req: &ApiRequest) -> Reply {
    let query = req.query_pairs();
    let count = || {
        query
            .get("count")
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(1)
    };
    let on = || {
        !matches!(
            query.get("on").map(String::as_str),
            Some("0" | "false" | "off" | "no")
        )
    };
    let ok = || Reply::json(200, json!({"ok": true}));
    let mut state = lock(shared);
    match req.path.as_str() {
        "/_sim/fail" => match query.get("status").and_then(|s| s.parse::<u16>().ok()) {
            Some(status) if (100..1000).contains(&status) => {
                let n = count();
                state
                    .faults
                    .extend(std::iter::repeat_n(Fault::Status(status), n));
                ok()
            }
            _ => input_exception("`status` must be an HTTP status code."),
        },
        "/_sim/hang" => {
            let n = count();
            state.faults.extend(std::iter::repeat_n(Fault::Hang, n));
            ok()
        }
        "/_sim/fault" => {
            let fault =
                match query.get("kind").map(String::as_str) {
                    Some("hang") => Fault::Hang,
                    Some("non-json") => Fault::NonJson,
                    Some("wrong-content-type") => Fault::WrongContentType,
                    Some("truncated") => Fault::Truncated,
                    Some("status") => match query.get("status").and_then(|s| s.parse().ok()) {
                        Some(status) => Fault::Status(status),
                        None => return input_exception("`status` must be an HTTP status code."),
                    },
                    _ => return input_exception(
                        "`kind` must be hang, non-json, wrong-content-type, truncated or status.",
                    ),
                };
            let n = count();
            state.faults.extend(std::iter::repeat_n(fault, n));
            ok()
        }
        "/_sim/clear-faults" => {
            state.faults.clear();
            ok()
        }
        "/_sim/kill" => match query.get("access_token") {
            Some(token) => {
                state.access_tokens.remove(token);
                ok()
            }
            None => {
                state.access_tokens.clear();
                ok()
            }
        },
        "/_sim/redirect" => match query.get("url") {
            Some(url) if url::Url::parse(url).is_ok() => {
                state.redirect_url = Some(url.clone());
                ok()
            }
            _ => input_exception("`url` must be an absolute URL."),
        },
        "/_sim/cancel" => {
            state.cancel = on();
            ok()
        }
        "/_sim/user" => match (query.get("user_id"), query.get("user_name")) {
            (Some(id), name) => {
                state.user = User {
                    user_id: id.clone(),
                    user_name: name.cloned().unwrap_or_else(|| id.clone()),
                };
                ok()
            }
            _ => input_exception("Missing or empty field `user_id`."),
        },
        "/_sim/login-time" => {
            state.login_time = query.get("t").filter(|t| !t.is_empty()).cloned();
            ok()
        }
        "/_sim/refresh-tokens" => {
            state.issue_refresh_tokens = on();
            ok()
        }
        "/_sim/date-offset" => match query.get("secs").map(|s| s.parse::<i64>()) {
            Some(Ok(secs)) if secs.unsigned_abs() < 100 * 365 * 86_400 => {
                state.date_offset_secs = secs;
                ok()
            }
            _ => input_exception("`secs` must be a whole number of seconds (negative: behind)."),
        },
        "/_sim/calls" => Reply::json(200, json!(state.calls)),
        "/_sim/tokens" => {
            let mut tokens: Vec<&String> = state.access_tokens.keys().collect();
            tokens.sort();
            Reply::json(200, json!({"access_tokens": tokens}))
        }
        "/_sim/request-token" => {
            Reply::json(200, json!({"request_token": state.issue_request_token()}))
        }
        _ => Reply::error(404, "GeneralException", "Unknown simulator control route."),
    }
}

fn into_response(reply: Reply) -> Response<SimBody> {
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

/// A response body: whole, or (for [`Fault::Truncated`]) a part that stops short of the
/// announced `Content-Length`, which makes hyper close the connection.
enum SimBody {
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
