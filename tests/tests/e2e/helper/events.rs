//! Watching kited's events: a `kitectl watch` stream, scripts, scratch dirs and the test clock.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kite_tests::harness::Daemon;
use serde_json::{json, Value};

use crate::helper::{first_line, rfc3339};

/// How long anything that should happen promptly may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// `login_time` for fake-clock tests: the token expires at [`CUTOFF`].
pub const LOGIN_TIME: &str = "2026-11-23 09:00:00";

pub const CUTOFF: &str = "2026-11-24T06:00:00+05:30";

/// `CUTOFF` minus `secs`, as `KITED_FAKE_NOW`.
pub fn before_cutoff(secs: i64) -> String {
    (rfc3339(CUTOFF) - chrono::Duration::seconds(secs)).to_rfc3339()
}

pub fn logout(daemon: &Daemon) {
    let answer = daemon.request(&json!({"op": "logout"}));
    assert_eq!(answer["ok"], true, "logout failed: {answer}");
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) -> PathBuf {
    fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// A private directory for files a test's scripts write.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kited-events-")
        .tempdir()
        .unwrap()
}

// watch subscriptions

/// A `watch` subscription whose lines arrive on a channel from a reader thread: a raw socket
/// client or a `kitectl watch --json` child. Ends (hangs up, kills the child) when dropped.
pub struct Watch {
    pub lines: mpsc::Receiver<String>,
    pub what: String,
    pub child: Option<Child>,
    pub stream: Option<UnixStream>,
    /// Events already read past while looking for another one.
    pub seen: Vec<Value>,
}

impl Watch {
    /// `{"op":"watch"}` on a fresh socket connection; returns once `{"ok":true}` arrived.
    pub fn socket(daemon: &Daemon) -> Watch {
        let stream = daemon.connect_ipc();
        stream.set_read_timeout(None).unwrap();
        (&stream).write_all(b"{\"op\":\"watch\"}\n").unwrap();
        let reader = stream.try_clone().unwrap();
        let watch = Watch::from_reader(reader, "socket watch", None, Some(stream));
        watch.subscribed()
    }

    /// `kitectl watch --json`; returns once it printed `{"ok":true}`.
    pub fn kitectl(daemon: &Daemon) -> Watch {
        let mut child = daemon
            .ctl_command(&["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start kitectl watch");
        let stdout = child.stdout.take().unwrap();
        let watch = Watch::from_reader(stdout, "kitectl watch --json", Some(child), None);
        watch.subscribed()
    }

    pub fn from_reader(
        reader: impl Read + Send + 'static,
        what: &str,
        child: Option<Child>,
        stream: Option<UnixStream>,
    ) -> Watch {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            lines,
            what: what.into(),
            child,
            stream,
            seen: Vec::new(),
        }
    }

    pub fn subscribed(self) -> Watch {
        let first = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("{}: no first line: {e}", self.what));
        let first: Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("{}: first line {first:?} is not JSON: {e}", self.what));
        assert_eq!(first, json!({"ok": true}), "{}: first line", self.what);
        self
    }

    /// The next event line, checked for shape: an object with `event` and an RFC 3339 `at`.
    pub fn next(&mut self, deadline: Instant) -> Option<(String, Value)> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        let event: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", self.what));
        assert!(
            event["event"].is_string(),
            "{}: no event name: {line}",
            self.what
        );
        rfc3339(
            event["at"]
                .as_str()
                .unwrap_or_else(|| panic!("no at: {line}")),
        );
        Some((line, event))
    }

    /// Reads events until one named `name` (within `timeout`); returns it. Others are kept in
    /// `seen`.
    pub fn expect_within(&mut self, name: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            match self.next(deadline) {
                Some((_, event)) if event["event"] == name => return event,
                Some((_, event)) => self.seen.push(event),
                None => panic!(
                    "{}: no {name} event within {timeout:?}; saw {:?}",
                    self.what, self.seen
                ),
            }
        }
    }

    pub fn expect(&mut self, name: &str) -> Value {
        self.expect_within(name, WAIT)
    }

    /// The next event, whatever it is, as its raw line and value.
    pub fn next_line(&mut self) -> (String, Value) {
        self.next(Instant::now() + WAIT)
            .unwrap_or_else(|| panic!("{}: no event within {WAIT:?}", self.what))
    }

    /// Asserts that no event named `name` arrives within `within` (others are kept in `seen`).
    /// Only for things that must NOT happen, where no later event can prove it.
    pub fn assert_none_within(&mut self, name: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while let Some((line, event)) = self.next(deadline) {
            assert_ne!(event["event"], name, "{}: unexpected {line}", self.what);
            self.seen.push(event);
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// 1. watch

pub fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A private `dbus-daemon` (session type, on a socket in a temp dir, with no service
/// activation so no real notification daemon can be started on it).
pub struct Bus {
    pub daemon: Child,
    pub address: String,
    pub dir: tempfile::TempDir,
}

impl Bus {
    pub fn start() -> Bus {
        let dir = scratch();
        let config = dir.path().join("bus.conf");
        fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().join("bus").display()
            ),
        )
        .unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dbus-daemon (Debian package dbus-daemon)");
        let address = first_line(&mut daemon, "dbus-daemon", WAIT);
        assert!(
            address.starts_with("unix:"),
            "dbus-daemon printed {address:?}"
        );
        Bus {
            daemon,
            address,
            dir,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        kill_child(&mut self.daemon);
    }
}
