//! kite-bench: how fast `kitectl get-token` and kited are, side by side with `cat`, in one run.
//!
//! ```text
//! cargo build --release --workspace --bins && cargo run --release -p kite-tools --bin kite-bench
//! ```
//!
//! Starts the Kite simulator in-process and the release `kited` found next to this executable
//! (`target/release/`), logs in through the simulator, then measures: `kitectl get-token` as a
//! whole process against `cat` of a small file (interleaved, so drift hits both alike), the raw
//! socket round trip, throughput with concurrent clients, the daemon's CPU per request, its idle
//! RSS, threads and wake-ups, and the binary sizes. Progress goes to stderr; stdout is the report
//! as markdown (paste it into docs/benchmarks.md).

mod live_token;

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kite_tests::harness::{bin, follow_browser_login};
use kite_tests::{Daemon, Sim, SimConfig};
use serde_json::{json, Value};

/// The command documented in docs/benchmarks.md.
const COMMAND: &str =
    "cargo build --release --workspace --bins && cargo run --release -p kite-tools --bin kite-bench";

#[derive(Debug, Parser)]
#[command(
    name = "kite-bench",
    about = "Benchmarks kitectl get-token and kited (release build) against cat, in one run",
    after_help = concat!(
        "Run: cargo build --release --workspace --bins && ",
        "cargo run --release -p kite-tools --bin kite-bench [-- --idle-secs 60]"
    )
)]
struct Opts {
    /// Length of the idle window in which kited's wake-ups are counted.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Process runs of each of `kitectl get-token` and `cat` (interleaved).
    #[arg(long, default_value_t = 2000)]
    processes: usize,
    /// Requests on one persistent socket connection.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Connect + request + close round trips.
    #[arg(long, default_value_t = 5000)]
    connects: usize,
    /// Concurrent client threads in the throughput runs.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Seconds each throughput run lasts.
    #[arg(long, default_value_t = 3.0)]
    load_secs: f64,
    /// Logins in the live-token run (from Kite's answer to each program using the new token).
    #[arg(long, default_value_t = 30)]
    live_logins: usize,
    /// Run only the live-token measurement.
    #[arg(long)]
    only_live: bool,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    match run(&opts) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kite-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn progress(what: &str) {
    eprintln!("kite-bench: {what}");
}

/// Latency samples, sorted once.
struct Samples(Vec<Duration>);

impl Samples {
    fn new(mut v: Vec<Duration>) -> Samples {
        v.sort_unstable();
        Samples(v)
    }

    /// Nearest-rank percentile, `p` in 0..=100.
    fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    fn median(&self) -> Duration {
        self.pct(50.0)
    }
}

fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

/// CPU time (user + system) of the whole process, all threads, from /proc/PID/stat.
fn cpu_time(pid: u32, ticks_per_sec: f64) -> Result<Duration, String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = &stat[stat.rfind(')').ok_or("malformed /proc stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| format!("no field {i} in /proc/{pid}/stat"))
    };
    Ok(Duration::from_secs_f64(
        (ticks(14)? + ticks(15)?) / ticks_per_sec,
    ))
}

/// The sum of the on-CPU time of every thread, in ns resolution (/proc/PID/task/*/schedstat).
fn sched_time(pid: u32) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = fs::read_to_string(task.path().join("schedstat")) {
                total += text
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// A `Name:  value kB` line of /proc/PID/status, as a number.
fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Per thread: (tid, name, voluntary + nonvoluntary context switches).
fn thread_switches(pid: u32) -> Vec<(u32, String, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let name = fs::read_to_string(task.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_string();
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.push((
            tid,
            name,
            field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:"),
        ));
    }
    out.sort();
    out
}

/// One NDJSON request/answer on an open connection; the answer line (newline included) is left
/// in `buf`.
fn round_trip(stream: &mut UnixStream, request: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
    stream.write_all(request)?;
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.last() == Some(&b'\n') {
            return Ok(());
        }
    }
}

fn connect(socket: &Path) -> Result<UnixStream, String> {
    let stream = UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Runs `cmd` to completion with stdout to a pipe; returns the wall time and stdout.
fn time_process(cmd: &mut Command) -> Result<(Duration, Vec<u8>), String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!("{cmd:?} exited {}", out.status));
    }
    Ok((took, out.stdout))
}

/// `threads` threads each running `make()` processes back to back for `load`: returns the
/// runs that printed `expected` and exited 0, the time taken, and the other runs.
fn process_throughput(
    threads: usize,
    load: Duration,
    make: &(dyn Fn() -> Command + Sync),
    expected: &[u8],
) -> (u64, Duration, u64) {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (ok, failed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut cmd = make();
                    let (mut ok, mut failed) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        match cmd.output() {
                            Ok(out) if out.status.success() && out.stdout == expected => ok += 1,
                            _ => failed += 1,
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        std::thread::sleep(load);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, u64::MAX / 4)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    (ok, start.elapsed(), failed)
}

/// This thread's id (from /proc/thread-self).
fn own_tid() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// A thread's CPU list as `taskset -pc` prints it (`0,1` or `0-1`).
fn affinity(tid: u32) -> Option<String> {
    let out = command_output("taskset", &["-pc", &tid.to_string()])?;
    Some(out.rsplit(": ").next()?.trim().to_string()).filter(|l| !l.is_empty())
}

/// Pins one thread to `cpus` with `taskset`; false when that is not possible.
fn set_affinity(tid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-pc", cpus, &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first `PATH` entry holding `name`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn cpu_model() -> (String, usize) {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    (model, cores)
}

/// The first three fields of /proc/loadavg (other work on the machine skews the figures).
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn size_of(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

struct Row {
    metric: String,
    result: String,
    goal: String,
    met: Option<bool>,
}

fn row(metric: &str, result: String, goal: &str, met: Option<bool>) -> Row {
    Row {
        metric: metric.into(),
        result,
        goal: goal.into(),
        met,
    }
}

/// The repository this kite-bench was built from (for the client libraries it drives).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(opts: &Opts) -> Result<String, String> {
    if cfg!(debug_assertions) {
        progress("warning: this is a debug build of kite-bench; run it with --release");
    }
    if opts.only_live {
        progress("live token only");
        return live_token::run(&bin("kitectl"), &repo(), opts.live_logins);
    }
    if std::env::var_os("KITED_BIN_DIR").is_none() {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe.parent().ok_or("kite-bench has no directory")?;
        for name in ["kited", "kitectl"] {
            if !dir.join(name).is_file() {
                return Err(format!(
                    "{} is missing: run `{COMMAND}` (or set KITED_BIN_DIR)",
                    dir.join(name).display()
                ));
            }
        }
    }
    let kited = bin("kited");
    let kitectl = bin("kitectl");
    if !kited.to_string_lossy().contains("/release/") {
        progress(&format!(
            "warning: measuring {} (not a release build)",
            kited.display()
        ));
    }
    let cat = which("cat").ok_or("no `cat` on PATH")?;
    let ticks = clock_ticks();
    let load_before = loadavg();

    // A private runtime dir, so kitectl finds the socket the default way
    // ($XDG_RUNTIME_DIR/kited/default.sock) and runs exactly as `kitectl get-token`.
    let runtime = tempfile::Builder::new()
        .prefix("kite-bench-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    fs::set_permissions(runtime.path(), fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let socket = runtime.path().join("kited").join("default.sock");

    progress("starting kite-sim and kited");
    let sim = Sim::start(SimConfig::default());
    let mut daemon = Daemon::builder(&sim).socket(&socket).start();
    let pid = daemon.pid();

    progress("logging in through the simulator (browser flow)");
    let answer = daemon.request(&json!({"op": "login_url"}));
    let login_url = answer["login_url"]
        .as_str()
        .ok_or_else(|| format!("login_url failed: {answer}"))?
        .to_string();
    let (status, page) = follow_browser_login(&daemon, &login_url);
    if status != 200 {
        return Err(format!("login failed ({status}): {page}"));
    }
    let answer = daemon.request(&json!({"op": "get_token"}));
    let token = answer["access_token"]
        .as_str()
        .ok_or_else(|| format!("get_token failed: {answer}"))?
        .to_string();
    let expected_stdout = format!("{token}\n").into_bytes();
    let rss_after_login = status_field(pid, "VmRSS").unwrap_or(0);

    // --- 1. Whole processes: kitectl get-token vs cat --------------------------------------
    let token_file = runtime.path().join("token.txt");
    fs::write(&token_file, &expected_stdout).map_err(|e| e.to_string())?;
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    // Both run with the same small environment; kitectl finds the socket the default way.
    let ctl_command = || {
        let mut cmd = Command::new(&kitectl);
        cmd.arg("get-token")
            .env_clear()
            .env("PATH", &path_var)
            .env("HOME", runtime.path())
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let cat_command = || {
        let mut cmd = Command::new(&cat);
        cmd.arg(&token_file)
            .env_clear()
            .env("PATH", &path_var)
            .env("HOME", runtime.path())
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let mut ctl_cmd = ctl_command();
    let mut cat_cmd = cat_command();
    progress(&format!(
        "whole processes: {} x kitectl get-token and {} x cat, interleaved",
        opts.processes, opts.processes
    ));
    for _ in 0..50 {
        time_process(&mut ctl_cmd)?;
        time_process(&mut cat_cmd)?;
    }
    let mut ctl_times = Vec::with_capacity(opts.processes);
    let mut cat_times = Vec::with_capacity(opts.processes);
    for i in 0..opts.processes {
        // ABBA order: neither command always runs right after the other.
        let ctl_first = i % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == ctl_first {
                let (t, out) = time_process(&mut ctl_cmd)?;
                if out != expected_stdout {
                    return Err(format!(
                        "kitectl get-token printed {:?}",
                        String::from_utf8_lossy(&out)
                    ));
                }
                ctl_times.push(t);
            } else {
                let (t, out) = time_process(&mut cat_cmd)?;
                if out != expected_stdout {
                    return Err("cat printed something else".into());
                }
                cat_times.push(t);
            }
        }
    }
    let ctl_times = Samples::new(ctl_times);
    let cat_times = Samples::new(cat_times);
    let ratio = ctl_times.median().as_secs_f64() / cat_times.median().as_secs_f64();

    // --- 2. Raw socket round trips -----------------------------------------------------------
    let request = b"{\"op\":\"get_token\"}\n";
    progress(&format!(
        "raw socket: {} get_token requests on one connection",
        opts.requests
    ));
    let mut stream = connect(&socket)?;
    let mut buf = Vec::with_capacity(512);
    for _ in 0..1000 {
        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
    }
    let check: Value = serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
    if check["access_token"] != json!(token) {
        return Err(format!("unexpected get_token answer: {check}"));
    }
    let mut persistent = Vec::with_capacity(opts.requests);
    for _ in 0..opts.requests {
        let start = Instant::now();
        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
        persistent.push(start.elapsed());
    }
    let persistent = Samples::new(persistent);

    // The same with this thread and kited's (single) runtime thread on one CPU: the difference
    // is the cost of waking the other, idle CPU for every request.
    progress("raw socket: the same with client and kited pinned to one CPU (taskset)");
    let same_cpu = match (own_tid(), affinity(pid)) {
        (Some(tid), Some(all)) => {
            let cpu = all.split([',', '-']).next().unwrap_or("0").to_string();
            if set_affinity(tid, &cpu) && set_affinity(pid, &cpu) {
                let mut times = Vec::with_capacity(opts.requests);
                for _ in 0..opts.requests {
                    let start = Instant::now();
                    round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
                    times.push(start.elapsed());
                }
                set_affinity(pid, &all);
                set_affinity(tid, &all);
                Some(Samples::new(times))
            } else {
                None
            }
        }
        _ => None,
    };
    drop(stream);

    progress(&format!(
        "raw socket: {} connect + get_token + close",
        opts.connects
    ));
    let mut per_connection = Vec::with_capacity(opts.connects);
    for _ in 0..opts.connects {
        let start = Instant::now();
        let mut stream = connect(&socket)?;
        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
        drop(stream);
        per_connection.push(start.elapsed());
    }
    let per_connection = Samples::new(per_connection);

    // --- 3. Throughput with concurrent clients ---------------------------------------------
    let load = Duration::from_secs_f64(opts.load_secs);
    progress(&format!(
        "throughput: {} threads spawning kitectl get-token for {:?}",
        opts.threads, load
    ));
    let cpu_before = cpu_time(pid, ticks)?;
    let sched_before = sched_time(pid);
    let (processes, proc_elapsed, proc_failures) =
        process_throughput(opts.threads, load, &ctl_command, &expected_stdout);
    let proc_cpu = cpu_time(pid, ticks)?.saturating_sub(cpu_before);
    let proc_sched = sched_time(pid).saturating_sub(sched_before);
    if proc_failures > 0 {
        return Err(format!(
            "{proc_failures} kitectl get-token runs failed under load"
        ));
    }
    let procs_per_sec = processes as f64 / proc_elapsed.as_secs_f64();

    progress(&format!(
        "throughput: {} threads spawning cat for {:?} (the same harness, for scale)",
        opts.threads, load
    ));
    let (cats, cat_elapsed, cat_failures) =
        process_throughput(opts.threads, load, &cat_command, &expected_stdout);
    if cat_failures > 0 {
        return Err(format!("{cat_failures} cat runs failed under load"));
    }
    let cats_per_sec = cats as f64 / cat_elapsed.as_secs_f64();

    progress(&format!(
        "throughput: {} threads on persistent connections for {:?}",
        opts.threads, load
    ));
    let cpu_before = cpu_time(pid, ticks)?;
    let sched_before = sched_time(pid);
    let (requests, req_elapsed) = {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let handles: Vec<_> = (0..opts.threads)
            .map(|_| {
                let stop = stop.clone();
                let socket = socket.clone();
                std::thread::spawn(move || -> Result<u64, String> {
                    let mut stream = connect(&socket)?;
                    let mut buf = Vec::with_capacity(512);
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        round_trip(&mut stream, request, &mut buf).map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        std::thread::sleep(load);
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| "a load thread panicked")??;
        }
        (total, start.elapsed())
    };
    let req_cpu = cpu_time(pid, ticks)?.saturating_sub(cpu_before);
    let req_sched = sched_time(pid).saturating_sub(sched_before);
    let reqs_per_sec = requests as f64 / req_elapsed.as_secs_f64();
    let per_request = |cpu: Duration, n: u64| cpu.as_secs_f64() * 1e6 / n.max(1) as f64;

    // --- 4. Idle ---------------------------------------------------------------------------
    // Tokio's blocking-pool threads linger 10 s after their last job; let them go first.
    let settle = Duration::from_secs(12);
    progress(&format!(
        "idle: settling {settle:?}, then counting wake-ups for {} s",
        opts.idle_secs
    ));
    std::thread::sleep(settle);
    let rss_idle = status_field(pid, "VmRSS").unwrap_or(0);
    let hwm = status_field(pid, "VmHWM").unwrap_or(0);
    let rss_anon = status_field(pid, "RssAnon").unwrap_or(0);
    let rss_file = status_field(pid, "RssFile").unwrap_or(0);
    let threads_idle = status_field(pid, "Threads").unwrap_or(0);
    let before = thread_switches(pid);
    std::thread::sleep(Duration::from_secs(opts.idle_secs));
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
    let still_valid = daemon.request(&json!({"op": "get_token"}))["access_token"] == json!(token);
    if !still_valid {
        return Err("the token was no longer served after the idle window".into());
    }
    daemon.terminate();

    // --- 5. Sizes --------------------------------------------------------------------------
    let ctl_size = size_of(&kitectl);
    let kited_size = size_of(&kited);

    // --- Report ------------------------------------------------------------------------------
    let (model, cores) = cpu_model();
    let arch = command_output("uname", &["-m"]).unwrap_or_else(|| std::env::consts::ARCH.into());
    let kernel = command_output("uname", &["-r"]).unwrap_or_default();
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let rows = vec![
        row(
            "`kitectl get-token` process, median (p90)",
            format!("{} ({})", us(ctl_times.median()), us(ctl_times.pct(90.0))),
            "",
            None,
        ),
        row(
            "`cat` small file process, median (p90)",
            format!("{} ({})", us(cat_times.median()), us(cat_times.pct(90.0))),
            "",
            None,
        ),
        row(
            "ratio of medians kitectl / cat",
            format!("{ratio:.2}×"),
            "≤ 1.15×",
            Some(ratio <= 1.15),
        ),
        row(
            "socket `get_token`, persistent connection, p50 / p99 / p99.9",
            format!(
                "{} / {} / {}",
                us(persistent.median()),
                us(persistent.pct(99.0)),
                us(persistent.pct(99.9))
            ),
            "p99 < 200 µs",
            Some(persistent.pct(99.0) < Duration::from_micros(200)),
        ),
        row(
            "same, client and kited pinned to one CPU, p50 / p99 / p99.9",
            same_cpu
                .as_ref()
                .map_or("(taskset unavailable)".into(), |t| {
                    format!(
                        "{} / {} / {}",
                        us(t.median()),
                        us(t.pct(99.0)),
                        us(t.pct(99.9))
                    )
                }),
            "",
            None,
        ),
        row(
            "socket connect + `get_token` + close, p50 / p99",
            format!(
                "{} / {}",
                us(per_connection.median()),
                us(per_connection.pct(99.0))
            ),
            "",
            None,
        ),
        row(
            &format!(
                "throughput, {} threads spawning `kitectl get-token`",
                opts.threads
            ),
            format!("{procs_per_sec:.0} processes/s"),
            "≥ 3000/s",
            Some(procs_per_sec >= 3000.0),
        ),
        row(
            &format!(
                "throughput, {} threads spawning `cat` (same harness, for scale)",
                opts.threads
            ),
            format!("{cats_per_sec:.0} processes/s"),
            "",
            None,
        ),
        row(
            &format!("throughput, {} threads on persistent sockets", opts.threads),
            format!("{reqs_per_sec:.0} requests/s"),
            "",
            None,
        ),
        row(
            "kited CPU per request, socket load (stat / schedstat)",
            format!(
                "{:.1} µs / {:.1} µs",
                per_request(req_cpu, requests),
                per_request(req_sched, requests)
            ),
            "",
            None,
        ),
        row(
            "kited CPU per request, kitectl process load (stat / schedstat)",
            format!(
                "{:.1} µs / {:.1} µs",
                per_request(proc_cpu, processes),
                per_request(proc_sched, processes)
            ),
            "",
            None,
        ),
        row(
            "kited RSS after login (before load)",
            mib(rss_after_login),
            "",
            None,
        ),
        row(
            "kited idle RSS after load: anonymous + file-backed (peak VmHWM)",
            format!(
                "{} = {} + {} ({})",
                mib(rss_idle),
                mib(rss_anon),
                mib(rss_file),
                mib(hwm)
            ),
            "≤ 6 MB",
            Some(rss_idle * 1024 <= 6_000_000),
        ),
        row(
            "kited threads when idle",
            threads_idle.to_string(),
            "",
            None,
        ),
        row(
            &format!(
                "kited wake-ups in {} s idle with a live token",
                opts.idle_secs
            ),
            if woke.is_empty() {
                "0".to_string()
            } else {
                format!("{wakeups} ({})", woke.join(", "))
            },
            "0",
            Some(wakeups == 0),
        ),
        row(
            "`kitectl` binary (stripped release)",
            format!("{ctl_size} B ({:.2} MiB)", ctl_size as f64 / 1048576.0),
            "≤ 1 MB",
            Some(ctl_size <= 1_000_000),
        ),
        row(
            "`kited` binary (stripped release)",
            format!("{kited_size} B ({:.2} MiB)", kited_size as f64 / 1048576.0),
            "",
            None,
        ),
    ];

    let mut out = String::new();
    let _ = writeln!(out, "### kite-bench results\n");
    let _ = writeln!(out, "- date: {date}");
    let _ = writeln!(
        out,
        "- machine: `{arch}`, {cores} × {model}, Linux {kernel}"
    );
    let _ = writeln!(out, "- command: `{COMMAND}`");
    let _ = writeln!(
        out,
        "- load average (1/5/15 min) at start: {load_before}; at end: {}",
        loadavg()
    );
    let _ = writeln!(
        out,
        "- runs: {} × kitectl and {} × cat interleaved (ABBA); {} socket requests; {} connects; \
         {} threads × {} s per throughput run; {} s idle window{}\n",
        opts.processes,
        opts.processes,
        opts.requests,
        opts.connects,
        opts.threads,
        opts.load_secs,
        opts.idle_secs,
        if gone > 0 {
            format!(" ({gone} thread(s) exited during it)")
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "| metric | result | goal | met |");
    let _ = writeln!(out, "|---|---|---|---|");
    for r in rows {
        let met = r.met.map_or("", verdict);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            r.metric, r.result, r.goal, met
        );
    }
    progress("live token: logins reaching watch, the libraries, Redis and an exec child");
    out.push_str(&live_token::run(&kitectl, &repo(), opts.live_logins)?);
    Ok(out)
}
