//! Playing systemd for kited: a notify socket, event lines, and kited or kitectl run alone.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kite_tests::harness::bin;
use kite_tests::{Daemon, DaemonBuilder};

/// How long any one datagram from kited may take to arrive.
pub const NOTIFY_DEADLINE: Duration = Duration::from_secs(10);

/// The datagram socket systemd listens on (`NOTIFY_SOCKET`), with the messages received so far.
pub struct NotifySocket {
    pub _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub socket: UnixDatagram,
    pub received: Vec<String>,
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = tempfile::Builder::new()
            .prefix("kited-notify-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("cannot bind the notify socket");
        NotifySocket {
            _dir: dir,
            path,
            socket,
            received: Vec::new(),
        }
    }

    /// Starts `builder`'s daemon reporting to a new notify socket; returns the daemon, the
    /// socket and the READY=1 datagram once it arrived.
    pub fn start(builder: DaemonBuilder) -> (Daemon, NotifySocket, String) {
        let mut notify = NotifySocket::new();
        let daemon = builder.env("NOTIFY_SOCKET", notify.path()).start();
        let ready = notify.wait_for("READY=1", || daemon.log());
        (daemon, notify, ready)
    }

    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next datagram within `timeout`, if any.
    pub fn recv(&mut self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.received.push(message.clone());
        Some(message)
    }

    /// Reads datagrams until one carries the assignment `line` (e.g. `READY=1`); returns that
    /// datagram. Panics with everything received (and the daemon log) after [`NOTIFY_DEADLINE`].
    pub fn wait_for(&mut self, line: &str, log: impl Fn() -> String) -> String {
        let deadline = Instant::now() + NOTIFY_DEADLINE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(message) if message.lines().any(|l| l == line) => return message,
                Some(_) => continue,
                None => break,
            }
        }
        panic!(
            "no {line} within {NOTIFY_DEADLINE:?}; received {:?}; log:\n{}",
            self.received,
            log()
        );
    }

    /// Datagrams arriving within `window`.
    pub fn drain(&mut self, window: Duration) -> Vec<String> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left.max(Duration::from_millis(1))) {
                Some(message) => out.push(message),
                None => break,
            }
        }
        out
    }
}

/// No desktop (there is no session bus here) and nothing else surprising.
pub const QUIET: &str = "[notify]\ndesktop = false\n";

pub fn ok(output: &Output) -> bool {
    output.status.success()
}

pub fn kitectl(args: &[&str]) -> Output {
    Command::new(bin("kitectl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run kitectl")
}

/// The unit files, as `Key=value` lists per file (comments and sections dropped).
pub fn unit(name: &str) -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
