//! kited at rest after the load: its memory and threads, and the wake-ups of each thread in an
//! idle window while it holds a live token.

use std::time::Duration;

use serde_json::json;

use crate::procfs::{status_field, thread_switches};
use crate::progress;
use crate::setup::Bench;

/// kited at rest: memory in KiB and threads (from /proc/PID/status), and its wake-ups.
pub struct Idle {
    pub rss: u64,
    pub hwm: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub threads: u64,
    /// Context switches of every thread in the window.
    pub wakeups: u64,
    /// `name(tid): switches` of each thread that woke.
    pub woke: Vec<String>,
    /// Threads that exited during the window.
    pub gone: usize,
}

/// Lets tokio's idle threads go, reads the memory, then counts wake-ups for `idle_secs`; fails
/// if kited no longer serves the token afterwards.
pub fn measure(bench: &Bench, idle_secs: u64) -> Result<Idle, String> {
    let pid = bench.pid;
    // Tokio's blocking-pool threads linger 10 s after their last job; let them go first.
    let settle = Duration::from_secs(12);
    progress(&format!(
        "idle: settling {settle:?}, then counting wake-ups for {idle_secs} s"
    ));
    std::thread::sleep(settle);
    let rss = status_field(pid, "VmRSS").unwrap_or(0);
    let hwm = status_field(pid, "VmHWM").unwrap_or(0);
    let rss_anon = status_field(pid, "RssAnon").unwrap_or(0);
    let rss_file = status_field(pid, "RssFile").unwrap_or(0);
    let threads = status_field(pid, "Threads").unwrap_or(0);
    let before = thread_switches(pid);
    std::thread::sleep(Duration::from_secs(idle_secs));
    let after = thread_switches(pid);
    let mut wakeups = 0u64;
    let mut woke = Vec::new();
    for (tid, name, n) in &after {
        let prev = before
            .iter()
            .find(|(t, _, _)| t == tid)
            .map_or(0, |(_, _, p)| *p);
        let delta = n.saturating_sub(prev);
        if delta > 0 {
            woke.push(format!("{name}({tid}): {delta}"));
        }
        wakeups += delta;
    }
    let gone = before
        .iter()
        .filter(|(t, _, _)| !after.iter().any(|(a, _, _)| a == t))
        .count();
    let still_valid =
        bench.daemon.request(&json!({"op": "get_token"}))["access_token"] == json!(bench.token);
    if !still_valid {
        return Err("the token was no longer served after the idle window".into());
    }
    Ok(Idle {
        rss,
        hwm,
        rss_anon,
        rss_file,
        threads,
        wakeups,
        woke,
        gone,
    })
}
