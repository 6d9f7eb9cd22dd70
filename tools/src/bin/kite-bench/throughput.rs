//! Throughput with concurrent clients: threads spawning `kitectl get-token` (and `cat`, for
//! scale) back to back, threads on persistent sockets, and kited's CPU time per request.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::processes::Commands;
use crate::procfs::{cpu_time, sched_time};
use crate::progress;
use crate::setup::Bench;
use crate::socket::{connect, round_trip, GET_TOKEN};

/// What one load run achieved and what kited spent on it.
pub struct Load {
    /// Successful runs or requests.
    pub count: u64,
    pub per_sec: f64,
    /// kited's CPU time from /proc/PID/stat (clock-tick resolution).
    pub cpu: Duration,
    /// kited's CPU time from /proc/PID/task/*/schedstat (ns resolution).
    pub sched: Duration,
}

pub struct Throughput {
    pub kitectl: Load,
    /// Processes per second of `cat` under the same harness.
    pub cats_per_sec: f64,
    pub socket: Load,
}

/// The three load runs, each `load` long with `threads` client threads.
pub fn run(
    bench: &Bench,
    commands: &Commands,
    threads: usize,
    load: Duration,
    ticks: f64,
) -> Result<Throughput, String> {
    let pid = bench.pid;
    progress(&format!(
        "throughput: {threads} threads spawning kitectl get-token for {load:?}"
    ));
    let cpu_before = cpu_time(pid, ticks)?;
    let sched_before = sched_time(pid);
    let (processes, proc_elapsed, proc_failures) = process_throughput(
        threads,
        load,
        &|| commands.kitectl(),
        &bench.expected_stdout,
    );
    let proc_cpu = cpu_time(pid, ticks)?.saturating_sub(cpu_before);
    let proc_sched = sched_time(pid).saturating_sub(sched_before);
    if proc_failures > 0 {
        return Err(format!(
            "{proc_failures} kitectl get-token runs failed under load"
        ));
    }
    let kitectl = Load {
        count: processes,
        per_sec: processes as f64 / proc_elapsed.as_secs_f64(),
        cpu: proc_cpu,
        sched: proc_sched,
    };

    progress(&format!(
        "throughput: {threads} threads spawning cat for {load:?} (the same harness, for scale)"
    ));
    let (cats, cat_elapsed, cat_failures) =
        process_throughput(threads, load, &|| commands.cat(), &bench.expected_stdout);
    if cat_failures > 0 {
        return Err(format!("{cat_failures} cat runs failed under load"));
    }
    let cats_per_sec = cats as f64 / cat_elapsed.as_secs_f64();

    progress(&format!(
        "throughput: {threads} threads on persistent connections for {load:?}"
    ));
    let cpu_before = cpu_time(pid, ticks)?;
    let sched_before = sched_time(pid);
    let (requests, req_elapsed) = socket_throughput(&bench.socket, threads, load)?;
    let socket = Load {
        count: requests,
        cpu: cpu_time(pid, ticks)?.saturating_sub(cpu_before),
        sched: sched_time(pid).saturating_sub(sched_before),
        per_sec: requests as f64 / req_elapsed.as_secs_f64(),
    };
    Ok(Throughput {
        kitectl,
        cats_per_sec,
        socket,
    })
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

/// `threads` threads each sending `get_token` on its own connection for `load`: returns the
/// requests answered and the time taken.
fn socket_throughput(
    socket: &Path,
    threads: usize,
    load: Duration,
) -> Result<(u64, Duration), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let stop = stop.clone();
            let socket = socket.to_path_buf();
            std::thread::spawn(move || -> Result<u64, String> {
                let mut stream = connect(&socket)?;
                let mut buf = Vec::with_capacity(512);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round_trip(&mut stream, GET_TOKEN, &mut buf).map_err(|e| e.to_string())?;
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
    Ok((total, start.elapsed()))
}
