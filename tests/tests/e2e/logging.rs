//! kited's log: RUST_LOG, and journal lines with priorities and without timestamps or colours.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use kite_tests::harness::bin;
use kite_tests::Daemon;
use rustix::process::Signal;

use crate::helper::systemd::{ok, NotifySocket, QUIET};
use crate::helper::{daemon_lines, sim};

#[test]
fn rust_log_is_respected() {
    let sim = sim();
    let mut quiet = Daemon::builder(&sim)
        .config_toml(QUIET)
        .env("RUST_LOG", "warn")
        .start();
    assert!(ok(&quiet.ctl(&["status"])));
    quiet.terminate();
    let log = quiet.log();
    assert!(
        !daemon_lines(&log).iter().any(|l| l.contains("INFO")),
        "INFO lines with RUST_LOG=warn:\n{log}"
    );

    let mut chatty = Daemon::builder(&sim).config_toml(QUIET).start();
    chatty.terminate();
    let log = chatty.log();
    assert!(
        daemon_lines(&log).iter().any(|l| l.contains("INFO")),
        "no INFO lines with RUST_LOG=info:\n{log}"
    );
}

/// Runs an unconfigured kited with stderr to a file until READY=1, then SIGTERM; returns the
/// log. With `journal`, `JOURNAL_STREAM` names that file, as systemd does for the journal.
fn log_of_a_run(journal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr");
    let log = fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let stream = if journal {
        format!("{}:{}", meta.dev(), meta.ino())
    } else {
        // A journal stream inherited by a process whose stderr went elsewhere.
        format!("{}:{}", meta.dev(), meta.ino() + 1)
    };
    let mut notify = NotifySocket::new();
    let home = dir.path();
    let mut child = Command::new(bin("kited"))
        .env_clear()
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", stream)
        .env("NOTIFY_SOCKET", notify.path())
        .args(["--listen", "127.0.0.1:0", "--socket"])
        .arg(home.join("kited.sock"))
        .arg("--state-dir")
        .arg(home.join("state"))
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    notify.wait_for("READY=1", || {
        fs::read_to_string(&log_path).unwrap_or_default()
    });
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    fs::read_to_string(&log_path).unwrap()
}

fn has_timestamp(line: &str) -> bool {
    // 2026-11-23T06:00:00.123456Z
    line.as_bytes().windows(11).any(|w| {
        w[4] == b'-'
            && w[7] == b'-'
            && w[10] == b'T'
            && w[..4].iter().all(u8::is_ascii_digit)
            && w[5..7].iter().all(u8::is_ascii_digit)
            && w[8..10].iter().all(u8::is_ascii_digit)
    })
}

#[test]
fn journal_lines_have_priorities_and_no_timestamps_or_colours() {
    let log = log_of_a_run(true);
    assert!(!log.is_empty());
    for line in log.lines() {
        assert!(
            !has_timestamp(line),
            "timestamp under the journal: {line:?}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "colour under the journal: {line:?}"
        );
        assert!(
            ["<3>", "<4>", "<6>", "<7>"]
                .iter()
                .any(|p| line.starts_with(p)),
            "no syslog priority prefix: {line:?}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<4>") && l.contains("not configured")),
        "a warning at priority 4:\n{log}"
    );
    assert!(log.lines().any(|l| l.starts_with("<6>")), "{log}");

    let plain = log_of_a_run(false);
    assert!(
        plain
            .lines()
            .all(|l| has_timestamp(l) && !l.starts_with('<')),
        "a stale JOURNAL_STREAM must not change the format:\n{plain}"
    );
    assert!(!plain.contains('\u{1b}'));
}
