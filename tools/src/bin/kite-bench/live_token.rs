//! How fast a login reaches the programs that use the token: from the moment the simulated Kite
//! minted the session (its answer to the exchange left right after) to
//! (a) a `watch` subscriber's `token_new`, (b) the Python library's `access_token` changing,
//! (c) the Node library's, (d) a Redis subscriber reading the new key, and (e) a
//! `kitectl exec --on-new-token restart` child running with the new token, all side by side on
//! the same logins.
//!
//! Each observer reports a wall-clock time (`CLOCK_REALTIME`, shared by every process on the
//! host) and a fingerprint of the token it saw (a SHA-256 prefix, never the token).

mod observers;
mod redis;

use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use kite_tests::{Daemon, Sim, SimConfig};

use crate::machine::which;
use crate::setup::login;
use observers::{
    fingerprint, follow_watch, kill_group, node_command, python_command, spawn_observer, Seen,
};
use redis::{follow_redis, Redis};

/// How long one login may take to reach every observer before the run gives up on it.
const PER_LOGIN_DEADLINE: Duration = Duration::from_secs(10);
/// How long an observer process may take to say it is following.
const OBSERVER_START_DEADLINE: Duration = Duration::from_secs(20);
/// The goals: same host within 100 ms (p99), another host through Redis within 1 s.
const SAME_HOST_GOAL_MS: f64 = 100.0;
const REDIS_GOAL_MS: f64 = 1000.0;

/// The observers, in the report's order.
const OBSERVERS: [(&str, &str, f64); 5] = [
    (
        "watch",
        "(a) `watch` subscriber's `token_new`",
        SAME_HOST_GOAL_MS,
    ),
    (
        "python",
        "(b) Python `kited.kite()`: `access_token` changed",
        SAME_HOST_GOAL_MS,
    ),
    (
        "node",
        "(c) Node `kite()`: `access_token` changed",
        SAME_HOST_GOAL_MS,
    ),
    (
        "redis",
        "(d) Redis subscriber read the new key",
        REDIS_GOAL_MS,
    ),
    (
        "exec",
        "(e) `exec --on-new-token restart` child running",
        SAME_HOST_GOAL_MS,
    ),
];

/// Percentile of sorted milliseconds (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `logins` logins through the simulator with every observer following, and returns the
/// report section as markdown.
pub fn run(kitectl: &Path, repo: &Path, logins: usize) -> Result<String, String> {
    let runtime = tempfile::Builder::new()
        .prefix("kite-bench-live-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let socket = runtime.path().join("kited.sock");
    let redis = Redis::start();
    let profile = "default";
    let (key, channel) = (
        format!("kite:{profile}:token"),
        format!("kite:{profile}:events"),
    );
    let sim = Sim::start(SimConfig::default());
    let mut builder = Daemon::builder(&sim).socket(&socket);
    if let Some(redis) = &redis {
        builder = builder.config_toml(&format!(
            "[sinks.redis]\nurl = \"redis://127.0.0.1:{}/0\"\n",
            redis.port
        ));
    }
    let daemon = builder.start();
    login(&daemon)?;

    let (tx, rx) = mpsc::channel::<Seen>();
    let (ready_tx, ready_rx) = mpsc::channel::<&'static str>();
    let mut notes = Vec::new();
    let mut children: Vec<Child> = Vec::new();
    let mut expected: Vec<&'static str> = vec!["watch"];
    follow_watch(&socket, tx.clone())?;

    let python = repo.join("target/py-venv/bin/python");
    if python.is_file() {
        let mut cmd = python_command(&python, &socket, &sim.url());
        let child = spawn_observer("python", &mut cmd, tx.clone(), ready_tx.clone())?;
        children.push(child);
        expected.push("python");
    } else {
        notes.push(format!(
            "(b) not measured: {} is missing (run `clients/python/run-tests` once)",
            python.display()
        ));
    }
    let node_modules = repo.join("clients/node/test/deps/node_modules");
    if node_modules.is_dir() && which("node").is_some() {
        let mut cmd = node_command(repo, &node_modules, &socket, &sim.url());
        let child = spawn_observer("node", &mut cmd, tx.clone(), ready_tx.clone())?;
        children.push(child);
        expected.push("node");
    } else {
        notes.push(
            "(c) not measured: node or clients/node/test/deps is missing (run `clients/node/run-tests` once)"
                .to_string(),
        );
    }
    match &redis {
        Some(redis) => {
            if follow_redis(redis.port, key, channel, tx.clone()).is_some() {
                expected.push("redis");
            } else {
                notes.push("(d) not measured: cannot subscribe to Redis".to_string());
            }
        }
        None => notes.push("(d) not measured: no `redis-server` on PATH".to_string()),
    }
    let exec = observers::start_exec(kitectl, &socket, tx.clone(), ready_tx.clone())?;
    expected.push("exec");
    children.push(exec);

    let starters = expected
        .iter()
        .filter(|o| matches!(**o, "python" | "node"))
        .count();
    for _ in 0..starters {
        ready_rx
            .recv_timeout(OBSERVER_START_DEADLINE)
            .map_err(|_| "an observer did not start".to_string())?;
    }

    let mut samples: Vec<(&'static str, f64)> = Vec::new();
    let mut missed: Vec<&'static str> = Vec::new();
    for n in 0..logins {
        if n % 10 == 0 {
            eprintln!("kite-bench: live token: login {} of {logins}", n + 1);
        }
        let token = login(&daemon)?;
        let fp = fingerprint(&token);
        let minted = sim
            .minted_at(&token)
            .ok_or("the simulator has no mint time for the new token")?;
        let mut waiting: Vec<&'static str> = expected.clone();
        let deadline = std::time::Instant::now() + PER_LOGIN_DEADLINE;
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(seen) = rx.recv_timeout(left) else {
                missed.extend(waiting.iter().copied());
                break;
            };
            let matches = seen.fingerprint.as_deref().is_none_or(|f| f == fp);
            if matches && waiting.contains(&seen.observer) {
                waiting.retain(|o| *o != seen.observer);
                let ms = seen
                    .at
                    .duration_since(minted)
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .unwrap_or(0.0);
                samples.push((seen.observer, ms));
            }
        }
    }
    for child in &mut children {
        kill_group(child);
    }
    drop(daemon);

    Ok(report(logins, &samples, &missed, notes))
}

/// The report section: one row an observer, then why any observer was not measured.
fn report(
    logins: usize,
    samples: &[(&'static str, f64)],
    missed: &[&'static str],
    notes: Vec<String>,
) -> String {
    let mut report = format!(
        "\n### Live token: from Kite's answer to the programs ({logins} logins)\n\n\
         | observer | p50 | p99 | max | goal (p99) | met |\n|---|---|---|---|---|---|\n"
    );
    for (name, label, goal) in OBSERVERS {
        let mut ms: Vec<f64> = samples
            .iter()
            .filter(|(o, _)| *o == name)
            .map(|(_, ms)| *ms)
            .collect();
        if ms.is_empty() {
            report.push_str(&format!(
                "| {label} | — | — | — | ≤ {goal} ms | not measured |\n"
            ));
            continue;
        }
        ms.sort_by(f64::total_cmp);
        let p99 = percentile(&ms, 99.0);
        let lost = missed.iter().filter(|o| **o == name).count();
        report.push_str(&format!(
            "| {label} | {:.2} ms | {p99:.2} ms | {:.2} ms | ≤ {goal} ms | {} |\n",
            percentile(&ms, 50.0),
            ms[ms.len() - 1],
            if p99 <= goal && lost == 0 {
                "yes".to_string()
            } else {
                format!("**no** ({lost} missed)")
            }
        ));
    }
    for note in notes {
        report.push_str(&format!("\n{note}"));
    }
    report.push('\n');
    report
}
