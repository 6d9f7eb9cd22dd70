//! Runs the real `kited` and `kitectl` binaries as processes (never in-process) against a
//! [`Sim`], each daemon in its own temporary directory, and tears them down without leaving
//! processes behind.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use kite_proto::{parse_answer, Answer, Call, Request};
use serde_json::Value;

pub use crate::daemon_builder::DaemonBuilder;
use crate::http_client::{self, HttpReply};
/// [`POLL_INTERVAL`] also paces the harness's readiness checks.
pub use crate::poll::{eventually, POLL_INTERVAL};
use crate::sim::Sim;

/// How long a daemon may take to become ready.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long [`Daemon::terminate`] waits after SIGTERM.
pub const TERM_DEADLINE: Duration = Duration::from_secs(5);
/// Read timeout on IPC connections made by the harness.
pub const IPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The path of a workspace binary: `$KITED_BIN_DIR/NAME` if set, else next to the test
/// executable (`target/debug`, with a trailing `deps` stripped). Panics when missing.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("KITED_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let exe = std::env::current_exe().expect("cannot find the test executable");
            let mut dir = exe
                .parent()
                .expect("test executable has no directory")
                .to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    if !path.is_file() {
        panic!(
            "{} does not exist: run `cargo build --workspace --bins` first (or set KITED_BIN_DIR)",
            path.display()
        );
    }
    path
}

pub use crate::ports::free_port;

/// The status code of a raw reply's status line (`HTTP/1.1 431 ...` → 431); 0 when nothing
/// came back (the peer closed or reset without answering).
pub fn reply_status(reply: &str) -> u16 {
    if reply.is_empty() {
        return 0;
    }
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP reply: {reply:?}"))
}

/// A running `kited` process with its own temporary directory. Dropping it kills the process
/// (SIGKILL if still alive), waits for it, and removes the directory.
pub struct Daemon {
    pub(crate) child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) socket: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) config_path: Option<PathBuf>,
    pub(crate) log_path: PathBuf,
    /// Where the current run's part of the log starts.
    pub(crate) run_log_start: usize,
    pub(crate) settings: DaemonBuilder,
    // Last, so the process is gone before its directory is removed.
    pub(crate) dir: tempfile::TempDir,
}

impl Daemon {
    /// A builder whose daemon talks to `sim` (`KITE_API_ROOT`, `KITE_LOGIN_URL`, the key and
    /// secret all come from it).
    pub fn builder(sim: &Sim) -> DaemonBuilder {
        DaemonBuilder {
            sim: sim.clone(),
            envs: Vec::new(),
            removed_envs: Vec::new(),
            args: Vec::new(),
            config_toml: None,
            api_key: true,
            api_secret: true,
            state_dir: None,
            socket: None,
            set_redirect: true,
            umask: None,
        }
    }

    /// `Daemon::builder(sim).start()`.
    pub fn start(sim: &Sim) -> Daemon {
        Daemon::builder(sim).start()
    }

    /// The temporary directory everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `DIR/config.toml`, when the builder was given one.
    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn sim(&self) -> &Sim {
        &self.settings.sim
    }

    /// `127.0.0.1:PORT`, what `--listen` was given.
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// `http://127.0.0.1:PORT/auth/callback`.
    pub fn callback_url(&self) -> String {
        format!("{}/auth/callback", self.base_url())
    }

    /// The daemon's process id (of the current run).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is not running").id()
    }

    /// Everything the daemon wrote to stdout and stderr, all runs.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Rewrites `DIR/config.toml` (e.g. before a SIGHUP). Panics if the daemon was started
    /// without `config_toml`, since it would not be reading that file.
    pub fn write_config(&self, toml: &str) {
        let path = self
            .config_path
            .as_ref()
            .expect("the daemon was started without .config_toml(), so it has no --config file");
        fs::write(path, toml).expect("cannot write config.toml");
    }

    /// Whether the process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends a signal (e.g. `rustix::process::Signal::HUP`) to the daemon.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("pid 0");
        rustix::process::kill_process(pid, signal).expect("cannot signal the daemon");
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to [`TERM_DEADLINE`] for the exit. Panics (after a SIGKILL) with
    /// the log if the daemon does not stop in time.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            return status;
        }
        self.signal(rustix::process::Signal::TERM);
        match self.wait_exit(TERM_DEADLINE) {
            Some(status) => status,
            None => {
                self.kill9();
                panic!(
                    "kited did not exit within {TERM_DEADLINE:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Stops the daemon if it still runs (SIGTERM) and starts it again on the same state dir,
    /// socket and (if still free) port; waits until it is ready.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.terminate();
        }
        self.spawn_child();
        self.wait_ready();
    }

    /// A `kitectl --socket SOCK ARGS...` command with the daemon's HOME and XDG dirs, ready to
    /// be adjusted (stdin, env) and run.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("kitectl"));
        self.base_env(&mut cmd);
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `kitectl --socket SOCK ARGS...` to completion.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_command(args).output().expect("cannot run kitectl")
    }

    /// A `kited ARGS...` command with this daemon's environment (key, secret, sim URLs, XDG
    /// dirs) but none of the harness's flags: for `kited check-config` and the like.
    pub fn kited_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("kited"));
        self.daemon_env(&mut cmd);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// A fresh IPC connection with [`IPC_TIMEOUT`] read and write timeouts.
    pub fn connect_ipc(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.socket).unwrap_or_else(|e| {
            panic!(
                "cannot connect to {}: {e}; log:\n{}",
                self.socket.display(),
                self.log()
            )
        });
        stream.set_read_timeout(Some(IPC_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IPC_TIMEOUT)).unwrap();
        stream
    }

    /// Sends one request on a new connection and returns the daemon's typed answer: `Ok` with
    /// the request's own answer type, or `Err` with the daemon's `{kind, message}`. An answer
    /// that is neither panics with the log.
    pub fn call<C: Call>(&self, request: C) -> Answer<C::Answer> {
        let request: Request = request.into();
        let line = request.to_line();
        let answer = self.exchange_line(line.trim_end());
        parse_answer(answer.as_bytes()).unwrap_or_else(|e| {
            panic!(
                "the answer to {line:?} is not a valid answer ({e}): {answer:?}; log:\n{}",
                self.log()
            )
        })
    }

    /// Sends one NDJSON request as JSON on a new connection and returns the one-line answer as
    /// JSON: for requests the typed [`call`](Self::call) cannot express (unknown ops, bad
    /// arguments) and answers read field by field.
    pub fn request(&self, request: &Value) -> Value {
        let answer = self.exchange_line(&request.to_string());
        serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("answer to {request} is not JSON ({e}): {answer:?}"))
    }

    /// Writes `line` and a newline on a new connection; returns the answer line.
    fn exchange_line(&self, line: &str) -> String {
        let stream = self.connect_ipc();
        (&stream)
            .write_all(format!("{line}\n").as_bytes())
            .expect("cannot write to the socket");
        let mut answer = String::new();
        BufReader::new(&stream)
            .read_line(&mut answer)
            .unwrap_or_else(|e| panic!("no answer to {line}: {e}; log:\n{}", self.log()));
        answer
    }

    /// Any HTTP request to the daemon (`Host: 127.0.0.1:PORT` unless `headers` names one).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpReply {
        let url = format!("{}{path}", self.base_url());
        http_client::request(method, &url, headers, body)
            .unwrap_or_else(|e| panic!("{method} {url} failed: {e}; log:\n{}", self.log()))
    }

    /// `GET path` → (status, headers with lowercase names, body).
    pub fn http_get(&self, path: &str) -> (u16, HashMap<String, String>, String) {
        let reply = self.http("GET", path, &[], b"");
        (reply.status, reply.header_map(), reply.text())
    }

    /// `POST path` with a JSON body and `Content-Type: application/json`.
    pub fn http_post_json(
        &self,
        path: &str,
        body: &Value,
    ) -> (u16, HashMap<String, String>, String) {
        let reply = self.http(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        (reply.status, reply.header_map(), reply.text())
    }

    /// Writes `bytes` to the HTTP port as they are and returns the reply text (up to the first
    /// complete reply, the daemon closing, or 10 s).
    pub fn raw_http(&self, bytes: &[u8]) -> String {
        let reply = http_client::raw(self.http_addr(), bytes, http_client::DEFAULT_TIMEOUT)
            .unwrap_or_else(|e| panic!("raw HTTP to {} failed: {e}", self.http_addr()));
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// `METHOD path` written as raw bytes, for requests the daemon may refuse before reading them
    /// whole (a client library would report the broken pipe instead of the answer). Adds `Host`,
    /// `Content-Length` and `Connection: close` unless `headers` names them; returns the reply
    /// text as [`raw_http`](Self::raw_http) does.
    pub fn raw_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> String {
        let named = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        if !named("host") {
            head.push_str(&format!("Host: {}\r\n", self.http_addr()));
        }
        if !named("content-length") && !named("transfer-encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if !named("connection") {
            head.push_str("Connection: close\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.raw_http(&bytes)
    }

    fn base_env(&self, cmd: &mut Command) {
        let dir = self.dir.path();
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_STATE_HOME", dir.join("xdg-state"))
            .env("RUST_BACKTRACE", "1");
    }

    fn daemon_env(&self, cmd: &mut Command) {
        self.base_env(cmd);
        let s = &self.settings;
        cmd.env("RUST_LOG", "info")
            .env("KITE_API_ROOT", s.sim.url())
            .env("KITE_LOGIN_URL", s.sim.login_url());
        if s.api_key {
            cmd.env("KITE_API_KEY", s.sim.api_key());
        }
        if s.api_secret {
            cmd.env("KITE_API_SECRET", s.sim.api_secret());
        }
        for key in &s.removed_envs {
            cmd.env_remove(key);
        }
        for (key, value) in &s.envs {
            cmd.env(key, value);
        }
    }

    pub(crate) fn spawn_child(&mut self) {
        if self.settings.set_redirect {
            self.settings.sim.set_redirect_url(&self.callback_url());
        }
        let mut cmd = Command::new(bin("kited"));
        self.daemon_env(&mut cmd);
        if let Some(config) = &self.config_path {
            cmd.arg("--config").arg(config);
        }
        cmd.arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--listen")
            .arg(self.http_addr().to_string())
            .args(&self.settings.args);
        if let Some(mask) = self.settings.umask {
            let mask = rustix::fs::Mode::from_raw_mode(mask);
            // SAFETY: the closure runs in the forked child before exec and only calls umask(2),
            // which is async-signal-safe and touches no memory shared with the parent.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::umask(mask);
                    Ok(())
                });
            }
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("cannot open the daemon log");
        self.run_log_start = log.metadata().map(|m| m.len() as usize).unwrap_or(0);
        // Program and arguments only: the environment holds the api secret, and tests assert
        // that the secret never appears in this log.
        let argv: Vec<String> = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let _ = writeln!(log, "--- harness: starting {}", argv.join(" "));
        let err: File = log.try_clone().expect("cannot dup the log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin("kited").display())),
        );
    }

    /// Polls until ready; retries on a fresh port if the chosen one was taken meanwhile.
    pub(crate) fn wait_ready(&mut self) {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let deadline = Instant::now() + START_DEADLINE;
            loop {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                    let log = self.log();
                    let this_run = log.get(self.run_log_start..).unwrap_or(&log);
                    let port_taken = this_run.contains("in use") || this_run.contains("AddrInUse");
                    if port_taken && attempts < 5 {
                        self.port = free_port();
                        self.spawn_child();
                        break;
                    }
                    panic!("kited exited ({status}) before it was ready; log:\n{log}");
                }
                if self.ready() {
                    return;
                }
                if Instant::now() >= deadline {
                    self.kill9();
                    panic!(
                        "kited was not ready within {START_DEADLINE:?} (socket {} answering ping, \
                         GET http://{}/healthz answering 200); log:\n{}",
                        self.socket.display(),
                        self.http_addr(),
                        self.log()
                    );
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }

    fn ready(&self) -> bool {
        let pinged = (|| -> Option<bool> {
            let stream = UnixStream::connect(&self.socket).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            stream
                .set_write_timeout(Some(Duration::from_secs(1)))
                .ok()?;
            (&stream).write_all(b"{\"op\":\"ping\"}\n").ok()?;
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).ok()?;
            let answer: Value = serde_json::from_str(&line).ok()?;
            Some(answer["ok"] == Value::Bool(true))
        })()
        .unwrap_or(false);
        if !pinged {
            return false;
        }
        let url = format!("{}/healthz", self.base_url());
        matches!(
            http_client::request_with_timeout("GET", &url, &[], b"", Duration::from_secs(1)),
            Ok(reply) if reply.status == 200
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Does what a browser does with a login URL: `GET` it at the sim (a 302 when Kite "logs the
/// human in"), then `GET` the `Location` (kited's `/auth/callback`). Returns the final status and
/// body; when the sim does not redirect, its own status and body.
pub fn follow_browser_login(daemon: &Daemon, login_url: &str) -> (u16, String) {
    let first =
        http_client::get(login_url).unwrap_or_else(|e| panic!("GET {login_url} failed: {e}"));
    if !(300..400).contains(&first.status) {
        return (first.status, first.text());
    }
    let location = first
        .header("location")
        .unwrap_or_else(|| panic!("redirect from {login_url} has no Location"))
        .to_string();
    let second = http_client::get(&location).unwrap_or_else(|e| {
        panic!(
            "GET {location} (the login redirect) failed: {e}; kited log:\n{}",
            daemon.log()
        )
    });
    (second.status, second.text())
}
