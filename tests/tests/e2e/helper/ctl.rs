//! Running `kitectl` against a test daemon: asserting success or a failure's exit code and one-line error, and the typed answers of `get-token`, `status --json`, `login` and `exchange`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use kite_tests::harness::bin;
use kite_tests::Daemon;

use crate::helper::the_new_token;
use serde_json::Value;

pub fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "kitectl {args:?} exited {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Runs kitectl and asserts exit 0; returns stdout.
pub fn ctl_ok(daemon: &Daemon, args: &[&str]) -> String {
    let out = daemon.ctl(args);
    assert_eq!(
        code(&out),
        Some(0),
        "{}\n--- kited log:\n{}",
        describe(args, &out),
        daemon.log()
    );
    stdout(&out)
}

/// Runs kitectl, asserts the exit code and that stderr is exactly one `kitectl: …` line; returns
/// that line.
pub fn ctl_fails(daemon: &Daemon, args: &[&str], expected_code: i32) -> String {
    let out = daemon.ctl(args);
    assert_eq!(
        code(&out),
        Some(expected_code),
        "{}\n--- kited log:\n{}",
        describe(args, &out),
        daemon.log()
    );
    one_error_line(args, &out)
}

/// Asserts that stderr is exactly one non-empty line starting `kitectl:`; returns it.
pub fn one_error_line(args: &[&str], out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one stderr line; {}",
        describe(args, out)
    );
    assert!(
        lines[0].starts_with("kitectl:"),
        "the error line should start with `kitectl:`; {}",
        describe(args, out)
    );
    assert!(
        !lines[0].contains("Error {") && !lines[0].contains("panicked"),
        "the error line looks like a Rust debug dump; {}",
        describe(args, out)
    );
    lines[0].to_string()
}

/// `kitectl get-token`: asserts exit 0 and that stdout is the token alone plus a newline.
pub fn ctl_get_token(daemon: &Daemon) -> String {
    let out = ctl_ok(daemon, &["get-token"]);
    assert!(
        out.ends_with('\n') && out.lines().count() == 1,
        "get-token should print the token alone on one line: {out:?}"
    );
    let token = out.trim_end_matches('\n').to_string();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "{out:?}"
    );
    token
}

pub fn ctl_status_json(daemon: &Daemon) -> Value {
    let out = ctl_ok(daemon, &["status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"))
}

/// `kitectl login`: asserts exit 0 and a single URL line on stdout; returns the URL.
pub fn ctl_login_url(daemon: &Daemon) -> String {
    let out = ctl_ok(daemon, &["login"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "login should print the URL alone: {out:?}");
    let url = lines[0].trim().to_string();
    assert!(url.starts_with("http"), "not a URL: {url:?}");
    url
}

/// `kitectl exchange VALUE` that must succeed; returns the token the sim issued.
pub fn ctl_exchange(daemon: &Daemon, value: &str) -> String {
    let sim = daemon.sim();
    let before = sim.valid_access_tokens();
    let out = ctl_ok(daemon, &["exchange", value]);
    assert!(
        out.contains("Kite Tester") || out.contains("AB1234"),
        "exchange should say who logged in: {out:?}"
    );
    the_new_token(sim, &before)
}

pub fn kitectl_at(socket: &Path, runtime: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("kitectl"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", runtime)
        .env("XDG_RUNTIME_DIR", runtime)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null());
    cmd.output().expect("run kitectl")
}
