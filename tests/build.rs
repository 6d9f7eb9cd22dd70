//! Tells the end-to-end tests what this machine can do, so a test that cannot run here is reported
//! by the test runner as ignored (with its reason) instead of returning early and showing green.
//! Under `CI=true` every such test is compiled in as runnable: there it runs, and fails with its
//! reason if the machine lacks what it needs.

use std::fs;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(kited_tests_as_root)");
    println!("cargo::rustc-check-cfg=cfg(kited_tests_many_fds)");
    println!("cargo:rerun-if-env-changed=CI");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if ci || effective_uid() == Some(0) {
        println!("cargo:rustc-cfg=kited_tests_as_root");
    }
    if ci || hard_open_files_limit().is_some_and(|hard| hard >= MANY_FDS) {
        println!("cargo:rustc-cfg=kited_tests_many_fds");
    }
}

/// The crowd test holds 1,100 connections in kited plus as many in the test: four times that
/// leaves room for everything else both processes open.
const MANY_FDS: u64 = 4 * 1100;

/// The effective uid of the build, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The hard `RLIMIT_NOFILE` of the build, from `/proc/self/limits` ("unlimited" counts as large).
fn hard_open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let hard = line.split_whitespace().nth(4)?;
    if hard == "unlimited" {
        return Some(u64::MAX);
    }
    hard.parse().ok()
}
