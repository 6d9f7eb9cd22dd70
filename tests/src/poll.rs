//! Waiting without bare sleeps: a condition polled at a short interval until it holds or a
//! deadline passes. Compiled into kite-tests' harness and, by path, into kite-sim's own tests.

use std::time::{Duration, Instant};

/// How often a condition is re-checked: short enough that a test waits little past the moment
/// it holds, long enough not to spin a core.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` every [`POLL_INTERVAL`] until it holds; panics naming `what` after `timeout`.
pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
