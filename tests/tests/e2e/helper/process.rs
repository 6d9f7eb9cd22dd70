//! Waiting on child processes the tests start themselves (kitectl clients, kite-sim, scripts):
//! always with a deadline, and never leaving the child running when the wait fails.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kite_tests::harness::POLL_INTERVAL;

/// Polls `child` until it exits; after `timeout` kills and reaps it, then panics naming `what`.
pub fn wait_child(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("cannot poll a child") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {timeout:?}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// What an exited `child` wrote to its piped stdout and stderr, as text.
pub fn read_outputs(child: &mut Child) -> (String, String) {
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out).expect("cannot read stdout");
    }
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut err).expect("cannot read stderr");
    }
    (out, err)
}

/// The first line `child` prints on its piped stdout, trimmed; after `timeout` kills and reaps
/// the child, then panics naming `what`.
pub fn first_line(child: &mut Child, what: &str, timeout: Duration) -> String {
    let stdout = child.stdout.take().expect("stdout is not piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(timeout) {
        Ok(line) => line.trim().to_string(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} printed nothing within {timeout:?}");
        }
    }
}

/// A child that is killed and reaped when dropped, so a failed assertion leaves nothing running.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// Waits (up to `timeout`) for the child to exit by itself; its status, stdout and stderr.
    pub fn wait(mut self, timeout: Duration, what: &str) -> (ExitStatus, String, String) {
        let mut child = self
            .0
            .take()
            .expect("the guard holds its child until waited on");
        let status = wait_child(&mut child, timeout, what);
        let (out, err) = read_outputs(&mut child);
        (status, out, err)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
