//! How fast a login reaches the programs that use the token: from the moment the simulated Kite
//! minted the session (its answer to the exchange left right after) to
//! (a) a `watch` subscriber's `token_new`, (b) the Python library's `access_token` changing,
//! (c) the Node library's, (d) a Redis subscriber reading the new key, and (e) a
//! `kitectl exec --on-new-token restart` child running with the new token, all side by side on
//! the same logins.
//!
//! Each observer reports a wall-clock time (`CLOCK_REALTIME`, shared by every process on the
//! host) and a fingerprint of the token it saw (a SHA-256 prefix, never the token).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kite_tests::harness::follow_browser_login;
use kite_tests::{Daemon, Sim, SimConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

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

/// One report from an observer: who, when, and which token (fingerprint; `None` for watch).
struct Seen {
    observer: &'static str,
    at: SystemTime,
    fingerprint: Option<String>,
}

/// A SHA-256 prefix of the token: enough to tell tokens apart, nothing to log in with.
fn fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))[..16].to_string()
}

fn parse_wall(ns: &str) -> Option<SystemTime> {
    let ns: u64 = ns.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(ns))
}

/// Reads `NANOS FINGERPRINT` lines from a child's stdout into `tx` (and `ready` once).
fn follow_lines(
    observer: &'static str,
    out: impl Read + Send + 'static,
    tx: mpsc::Sender<Seen>,
    ready: mpsc::Sender<&'static str>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "ready" {
                let _ = ready.send(observer);
                continue;
            }
            let mut words = line.split_whitespace();
            if let (Some(at), Some(fp)) = (words.next().and_then(parse_wall), words.next()) {
                let _ = tx.send(Seen {
                    observer,
                    at,
                    fingerprint: Some(fp.to_string()),
                });
            }
        }
    });
}

/// The Python observer: the official client kept current by `kited.kite()`, with its
/// `set_access_token` wrapped to report each new token the moment the library sets it.
const PYTHON_OBSERVER: &str = r#"
import hashlib, sys, threading, time, kited
kc = kited.kite(socket=sys.argv[1], root=sys.argv[2])
set_token = kc.set_access_token
def report(token):
    set_token(token)
    print(time.time_ns(), hashlib.sha256(token.encode()).hexdigest()[:16], flush=True)
kc.set_access_token = report
print("ready", flush=True)
threading.Event().wait()
"#;

/// The Node observer: the same with `kite()` from `kited-client` and `setAccessToken`.
const NODE_OBSERVER: &str = r#"
const crypto = require('node:crypto');
const kited = require(process.argv[1]);
(async () => {
  const kc = await kited.kite({ socket: process.argv[2], root: process.argv[3] });
  const set = kc.setAccessToken.bind(kc);
  kc.setAccessToken = (token) => {
    set(token);
    const ns = process.hrtime.bigint() - startHr + startNs;
    console.log(`${ns} ${crypto.createHash('sha256').update(token).digest('hex').slice(0, 16)}`);
  };
  console.log('ready');
  setInterval(() => {}, 1 << 30);
})().catch((e) => { console.error(e.message); process.exit(1); });
const startNs = BigInt(Date.now()) * 1000000n;
const startHr = process.hrtime.bigint();
"#;

/// The restart-mode child: its first act is to note the time, then which token it got.
const EXEC_CHILD: &str = r#"now=$(date +%s%N); printf '%s %s\n' "$now" "$(printf %s "$KITE_ACCESS_TOKEN" | sha256sum | cut -c1-16)"; exec sleep 100000"#;

/// A Redis server for the sink, on a free port in its own directory.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        let program = which("redis-server")?;
        let dir = tempfile::tempdir().ok()?;
        let port = kite_tests::harness::free_port();
        let child = Command::new(program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + OBSERVER_START_DEADLINE;
        while std::time::Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// One RESP command as an array of bulk strings.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// Reads one RESP value (the subset Redis answers these commands with) as text parts.
fn read_resp(reader: &mut impl BufRead, parts: &mut Vec<Option<String>>) -> std::io::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let bad = || std::io::Error::other(format!("unexpected RESP line {line:?}"));
    match line.as_bytes().first() {
        Some(b'*') => {
            let n: i64 = line[1..].parse().map_err(|_| bad())?;
            for _ in 0..n.max(0) {
                read_resp(reader, parts)?;
            }
        }
        Some(b'$') => {
            let n: i64 = line[1..].parse().map_err(|_| bad())?;
            if n < 0 {
                parts.push(None);
            } else {
                let mut buf = vec![0; n as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                parts.push(Some(String::from_utf8_lossy(&buf).into_owned()));
            }
        }
        Some(b'+' | b':') => parts.push(Some(line[1..].to_string())),
        _ => return Err(bad()),
    }
    Ok(())
}

/// The Redis observer: SUBSCRIBE to the sink's channel; on each message, GET the key on a second
/// connection and report the token it holds.
fn follow_redis(port: u16, key: String, channel: String, tx: mpsc::Sender<Seen>) -> Option<()> {
    let mut sub = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut get = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sub.write_all(&resp(&["SUBSCRIBE", &channel])).ok()?;
    let mut sub_reader = BufReader::new(sub.try_clone().ok()?);
    let mut parts = Vec::new();
    read_resp(&mut sub_reader, &mut parts).ok()?;
    std::thread::spawn(move || {
        let mut get_reader = match get.try_clone() {
            Ok(stream) => BufReader::new(stream),
            Err(_) => return,
        };
        loop {
            let mut parts = Vec::new();
            if read_resp(&mut sub_reader, &mut parts).is_err() {
                return;
            }
            let is_token_new = parts
                .get(2)
                .and_then(|m| m.as_deref())
                .is_some_and(|m| m.contains("\"token_new\""));
            if !is_token_new {
                continue;
            }
            if get.write_all(&resp(&["GET", &key])).is_err() {
                return;
            }
            let mut value = Vec::new();
            if read_resp(&mut get_reader, &mut value).is_err() {
                return;
            }
            let at = SystemTime::now();
            let token = value
                .first()
                .and_then(|v| v.as_deref())
                .and_then(|v| serde_json::from_str::<Value>(v).ok())
                .and_then(|v| v["access_token"].as_str().map(fingerprint));
            let _ = tx.send(Seen {
                observer: "redis",
                at,
                fingerprint: token,
            });
        }
    });
    Some(())
}

/// The `watch` observer: a plain subscriber on the socket.
fn follow_watch(socket: &Path, tx: mpsc::Sender<Seen>) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("watch: {e}"))?;
    stream
        .write_all(b"{\"op\":\"watch\"}\n")
        .map_err(|e| format!("watch: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| format!("watch: {e}"))?;
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if line.contains("\"token_new\"") {
                let _ = tx.send(Seen {
                    observer: "watch",
                    at: SystemTime::now(),
                    fingerprint: None,
                });
            }
        }
    });
    Ok(())
}

fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

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
    let login = || -> Result<String, String> {
        let answer = daemon.request(&json!({"op": "login_url"}));
        let url = answer["login_url"]
            .as_str()
            .ok_or_else(|| format!("login_url failed: {answer}"))?;
        let (status, page) = follow_browser_login(&daemon, url);
        if status != 200 {
            return Err(format!("login failed ({status}): {page}"));
        }
        let answer = daemon.request(&json!({"op": "get_token"}));
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("get_token failed: {answer}"))
    };
    login()?;

    let (tx, rx) = mpsc::channel::<Seen>();
    let (ready_tx, ready_rx) = mpsc::channel::<&'static str>();
    let mut notes = Vec::new();
    let mut children: Vec<Child> = Vec::new();
    let mut expected: Vec<&'static str> = vec!["watch"];
    follow_watch(&socket, tx.clone())?;

    let python = repo.join("target/py-venv/bin/python");
    if python.is_file() {
        let mut child = Command::new(&python)
            .args(["-c", PYTHON_OBSERVER])
            .arg(&socket)
            .arg(sim.url())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python observer: {e}"))?;
        let out = child.stdout.take().ok_or("python observer: no stdout")?;
        follow_lines("python", out, tx.clone(), ready_tx.clone());
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
        let mut child = Command::new("node")
            .args(["-e", NODE_OBSERVER])
            .arg(repo.join("clients/node"))
            .arg(&socket)
            .arg(sim.url())
            .env("NODE_PATH", &node_modules)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("node observer: {e}"))?;
        let out = child.stdout.take().ok_or("node observer: no stdout")?;
        follow_lines("node", out, tx.clone(), ready_tx.clone());
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
    let mut exec = Command::new(kitectl)
        .args(["--socket"])
        .arg(&socket)
        .args([
            "exec",
            "--on-new-token",
            "restart",
            "--",
            "sh",
            "-c",
            EXEC_CHILD,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("kitectl exec: {e}"))?;
    let exec_out = exec.stdout.take().ok_or("kitectl exec: no stdout")?;
    // The exec child reports a token at once: that first line is its start, not a login.
    let (exec_ready_tx, exec_ready_rx) = mpsc::channel::<Seen>();
    follow_lines("exec", exec_out, exec_ready_tx, ready_tx.clone());
    let exec_forward = tx.clone();
    let first_exec = exec_ready_rx
        .recv_timeout(OBSERVER_START_DEADLINE)
        .map_err(|_| "the exec child did not start".to_string())?;
    drop(first_exec);
    std::thread::spawn(move || {
        for seen in exec_ready_rx {
            let _ = exec_forward.send(seen);
        }
    });
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
        let token = login()?;
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
    Ok(report)
}
