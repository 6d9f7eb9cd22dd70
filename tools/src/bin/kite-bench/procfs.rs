//! Readings of one process from /proc: CPU time, memory and thread counts, and each thread's
//! context switches.

use std::fs;
use std::process::Command;
use std::time::Duration;

/// CPU time (user + system) of the whole process, all threads, from /proc/PID/stat.
pub fn cpu_time(pid: u32, ticks_per_sec: f64) -> Result<Duration, String> {
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
pub fn sched_time(pid: u32) -> Duration {
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

/// Clock ticks a second (`getconf CLK_TCK`), the unit of the CPU times in /proc/PID/stat.
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// A `Name:  value kB` line of /proc/PID/status, as a number.
pub fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Per thread: (tid, name, voluntary + nonvoluntary context switches).
pub fn thread_switches(pid: u32) -> Vec<(u32, String, u64)> {
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

/// This thread's id (from /proc/thread-self).
pub fn own_tid() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}
