//! What the Caddy and nginx fixtures share: a started proxy process, HTTPS requests through it
//! to `kited.test:PORT`, its log, and the wait until it reaches kited.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::harness::POLL_INTERVAL;
use crate::http_client::{self, HttpReply};

/// The public name kited is configured with (`http.public_url = https://kited.test:PORT`).
pub const PUBLIC_HOST: &str = "kited.test";

/// How long a proxy may take to start (Caddy makes its CA and a certificate) and answer
/// through to kited.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// Per request through the proxy.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `https://kited.test:PORT`.
pub fn public_url(port: u16) -> String {
    format!("https://{PUBLIC_HOST}:{port}")
}

/// A running proxy. Dropping it kills the process (after whatever gentler stop its owner tried),
/// so a test that panics, even while the proxy is starting, leaves nothing running.
pub(crate) struct ProxyProcess {
    /// `caddy` or `nginx`, for messages.
    name: &'static str,
    pub(crate) child: Child,
    pub(crate) port: u16,
    log_path: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    /// `child` answers HTTPS on `port` and writes its log to `log_path`.
    pub(crate) fn new(
        name: &'static str,
        child: Child,
        port: u16,
        log_path: PathBuf,
    ) -> ProxyProcess {
        ProxyProcess {
            name,
            child,
            port,
            log_path,
        }
    }

    /// Polls `GET /healthz` through the proxy until `reached` accepts the status; panics with
    /// the proxy's log when it exits first or [`START_DEADLINE`] passes.
    pub(crate) fn wait_ready(&mut self, reached: impl Fn(u16) -> bool) {
        let name = self.name;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before it was ready; log:\n{}",
                    self.log()
                );
            }
            if matches!(self.try_request("GET", "/healthz", &[]), Ok(r) if reached(r.status)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{name} on port {} did not answer /healthz within {START_DEADLINE:?}; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `https://kited.test:PORT`.
    pub(crate) fn public_url(&self) -> String {
        public_url(self.port)
    }

    /// The proxy's own log.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A request through the proxy over HTTPS (SNI `kited.test`; `headers` may name another
    /// `Host`; `path` may carry a query); redirects are not followed.
    pub(crate) fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<HttpReply> {
        self.try_send(
            method,
            &format!("{}{path}", self.public_url()),
            headers,
            b"",
        )
    }

    /// Any request, to an absolute `url` (a link kited sent) or with a body, through the proxy.
    pub(crate) fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpReply> {
        let at = SocketAddr::from(([127, 0, 0, 1], self.port));
        http_client::request_to(at, method, url, headers, body, REQUEST_TIMEOUT)
    }

    /// Like [`try_request`](Self::try_request), panicking with the proxy's log on failure.
    pub(crate) fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpReply {
        self.try_request(method, path, headers).unwrap_or_else(|e| {
            panic!(
                "{method} {path} through {} failed: {e}; log:\n{}",
                self.name,
                self.log()
            )
        })
    }
}
