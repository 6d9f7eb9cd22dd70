//! `kitectl get-token` and friends: no daemon running, `--wait`, and `exec`/`env` handing the token to programs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kite_tests::harness::{bin, eventually};
use kite_tests::Daemon;

use crate::helper::ctl::{
    code, ctl_exchange, ctl_fails, ctl_ok, describe, kitectl_at, one_error_line, stdout,
};
use crate::helper::files::is_socket;
use crate::helper::{browser_login, read_outputs, sim, wait_child};

#[test]
fn daemon_not_running_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nobody-here.sock");
    for args in [
        &["get-token"][..],
        &["status"],
        &["status", "--json"],
        &["get-token", "--wait", "5"],
        &["login"],
        &["logout"],
    ] {
        let out = kitectl_at(&missing, dir.path(), args);
        assert_eq!(code(&out), Some(3), "{}", describe(args, &out));
        let line = one_error_line(args, &out);
        assert!(line.contains("not running"), "{line}");
        assert!(out.stdout.is_empty(), "{}", describe(args, &out));
    }

    // A stale socket file with nobody listening: also "not running".
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(is_socket(&stale));
    let out = kitectl_at(&stale, dir.path(), &["get-token"]);
    assert_eq!(code(&out), Some(3), "{}", describe(&["get-token"], &out));
    let line = one_error_line(&["get-token"], &out);
    assert!(line.contains("not running"), "{line}");
}

// 8. The callback's checks: status, state

/// Whether process `pid` has a socket open (kitectl connected, or connecting).
fn has_socket_fd(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read_link(e.path())
            .map(|target| target.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false)
    })
}

#[test]
fn get_token_wait_returns_as_soon_as_someone_logs_in() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // The wait is bounded: with nobody logging in, exit 4 after about the wait.
    let started = Instant::now();
    ctl_fails(&daemon, &["get-token", "--wait", "1"], 4);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "get-token --wait 1 took {took:?}"
    );

    let mut child = daemon
        .ctl_command(&["get-token", "--wait", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kitectl");
    let pid = child.id();
    eventually(Duration::from_secs(5), "kitectl to connect", || {
        has_socket_fd(pid)
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "get-token --wait gave up before anyone logged in"
    );

    let token = browser_login(&daemon).token;
    let status = wait_child(
        &mut child,
        Duration::from_secs(5),
        "get-token --wait after the login",
    );
    let (out, err) = read_outputs(&mut child);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(out, format!("{token}\n"), "stderr: {err}");
}

// 15. exec and env

#[test]
fn exec_and_env_hand_the_token_to_programs() {
    let sim = sim();
    let daemon = Daemon::start(&sim);

    // No token yet: exec does not run the command and exits 4.
    let marker = daemon.dir().join("ran");
    let script = format!("touch '{}'", marker.display());
    ctl_fails(&daemon, &["exec", "--", "sh", "-c", &script], 4);
    assert!(!marker.exists(), "exec ran the command without a token");

    let token = ctl_exchange(&daemon, &sim.issue_request_token());
    let key = sim.api_key();

    // The exit code passes through; 7 only if both variables are right.
    let script = format!(
        "test \"$KITE_ACCESS_TOKEN\" = {token} && test \"$KITE_API_KEY\" = {key} && exit 7"
    );
    let out = daemon.ctl(&["exec", "--", "sh", "-c", &script]);
    assert_eq!(code(&out), Some(7), "{}", describe(&["exec"], &out));
    // And a command's own failure code too.
    let out = daemon.ctl(&["exec", "--", "sh", "-c", "exit 42"]);
    assert_eq!(code(&out), Some(42), "{}", describe(&["exec"], &out));
    // The child does not inherit the daemon's secret (kitectl never had it) but gets the args.
    let out = daemon.ctl(&[
        "exec",
        "--",
        "sh",
        "-c",
        "printf '%s|' \"$@\"",
        "sh",
        "a b",
        "--json",
    ]);
    assert_eq!(stdout(&out), "a b|--json|");

    // env, evaluated by a shell.
    let env_out = ctl_ok(&daemon, &["env"]);
    assert!(env_out.contains("export KITE_ACCESS_TOKEN="), "{env_out}");
    assert!(env_out.contains("export KITE_API_KEY="), "{env_out}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"eval "$("$1" --socket "$2" env)" || exit 99; printf %s "$KITE_ACCESS_TOKEN"; printf '|%s' "$KITE_API_KEY""#)
        .arg("sh")
        .arg(bin("kitectl"))
        .arg(daemon.socket_path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", daemon.dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", describe(&["env (eval)"], &out));
    assert_eq!(stdout(&out), format!("{token}|{key}"));
}

// 16. The shutdown op
