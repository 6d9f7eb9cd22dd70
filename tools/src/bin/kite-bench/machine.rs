//! The machine the bench runs on: its CPU and load, programs on `PATH`, file sizes, and
//! pinning threads to CPUs with `taskset`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A thread's CPU list as `taskset -pc` prints it (`0,1` or `0-1`).
pub fn affinity(tid: u32) -> Option<String> {
    let out = command_output("taskset", &["-pc", &tid.to_string()])?;
    Some(out.rsplit(": ").next()?.trim().to_string()).filter(|l| !l.is_empty())
}

/// Pins one thread to `cpus` with `taskset`; false when that is not possible.
pub fn set_affinity(tid: u32, cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-pc", cpus, &tid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The first `PATH` entry holding `name`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

pub fn cpu_model() -> (String, usize) {
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
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn size_of(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
