//! The `Sim` handle: starts the server on its own thread and runtime, and offers synchronous
//! methods to set the simulator up, inject faults and read what it saw.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::faults::Fault;
use crate::server::accept_loop;
use crate::state::{lock, Call, Shared, State, User};
use crate::SimConfig;

/// A running simulator. See the crate docs.
#[derive(Clone)]
pub struct Sim {
    shared: Arc<Shared>,
    _server: Arc<ServerThread>,
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
