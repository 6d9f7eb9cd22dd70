//! The first hour as a new user lives it: the messages they read (each said once, naming their
//! profile), the exits they get, and the pages they land on when they do something unusual.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use kite_tests::harness::bin;
use kite_tests::Daemon;
use serde_json::json;

use crate::helper::{sim, text};

/// One stderr line; `phrase` in it exactly once.
fn said_once(out: &Output, phrase: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert_eq!(
        stderr.matches(phrase).count(),
        1,
        "{phrase:?} once in: {stderr}"
    );
    stderr
}

#[test]
fn no_token_is_said_once_with_the_profiles_login_command() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let out = daemon.ctl(&["--profile", "dev", "get-token"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = said_once(&out, "no valid Kite token");
    // The hint repeats what reaches the same daemon: the profile, and the socket given.
    assert!(
        stderr.contains("`kitectl --profile dev --socket ") && stderr.contains(" login --open`"),
        "{stderr}"
    );
    assert!(!stderr.contains("`kitectl login --open`"), "{stderr}");
}

#[test]
fn not_configured_is_said_once_and_points_to_setup() {
    let sim = sim();
    let daemon = Daemon::builder(&sim).no_api_key().start();
    let out = daemon.ctl(&["--profile", "dev", "login"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = said_once(&out, "api key");
    assert_eq!(stderr.matches("configure").count(), 0, "{stderr}");
    assert!(
        stderr.contains("`kitectl --profile dev --socket ") && stderr.contains(" setup`"),
        "{stderr}"
    );
}

#[test]
fn config_errors_are_one_line_and_say_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let kited = |config: &Path| {
        std::process::Command::new(bin("kited"))
            .env_clear()
            .env("HOME", dir.path())
            .arg("--config")
            .arg(config)
            .arg("check-config")
            .output()
            .unwrap()
    };
    let out = kited(&dir.path().join("absent.toml"));
    assert_eq!(out.status.code(), Some(78));
    said_once(&out, "os error 2");

    let broken = dir.path().join("broken.toml");
    fs::write(&broken, "[kite\napi_key = \"abcdef12\"\n").unwrap();
    let out = kited(&broken);
    assert_eq!(out.status.code(), Some(78));
    let stderr = said_once(&out, broken.to_str().unwrap());
    assert!(stderr.contains("line 1"), "{stderr}");
}

#[test]
fn a_port_in_use_suggests_listen() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    fs::create_dir(&run).unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
    let out = std::process::Command::new(bin("kited"))
        .env_clear()
        .env("HOME", dir.path())
        .env("XDG_RUNTIME_DIR", &run)
        .args(["--listen", &addr, "--socket"])
        .arg(run.join("kited.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("run")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("cannot listen"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("in use") && line.contains("--listen"),
        "{line}"
    );
}

/// A directory with an `xdg-open` that exits with `code` after writing its argument to `seen`.
fn fake_xdg_open(dir: &Path, code: i32) -> std::path::PathBuf {
    let bin_dir = dir.join(format!("bin-{code}"));
    fs::create_dir_all(&bin_dir).unwrap();
    let script = bin_dir.join("xdg-open");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{}/seen'\nexit {code}\n",
            bin_dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    bin_dir
}

#[test]
fn login_open_fails_when_no_browser_opened() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let dir = tempfile::tempdir().unwrap();
    let login_open = |path: &Path| {
        daemon
            .ctl_command(&["login", "--open"])
            .env("PATH", path)
            .output()
            .unwrap()
    };

    let opens = fake_xdg_open(dir.path(), 0);
    let out = login_open(&opens);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = fs::read_to_string(opens.join("seen")).unwrap();
    assert_eq!(seen, text(&out.stdout).trim(), "xdg-open got the login URL");

    // xdg-open's "no method available" (3), and no xdg-open at all.
    for path in [fake_xdg_open(dir.path(), 3), dir.path().join("empty")] {
        let out = login_open(&path);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("no browser opened"), "{stderr}");
        assert!(!text(&out.stdout).is_empty(), "the URL is still printed");
    }
}

#[test]
fn status_exits_0_in_every_state_and_3_when_kited_is_down() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let out = daemon.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(0), "no token yet");
    let answer = daemon.request(&json!({"op": "logout"}));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(daemon.ctl(&["status"]).status.code(), Some(0), "logged out");
    daemon.terminate();
    let out = daemon.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn a_callback_without_kiteds_state_points_to_the_paste_box() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let request_token = sim.issue_request_token();
    let (status, _, body) = daemon.http_get(&format!(
        "/auth/callback?action=login&type=login&status=success&request_token={request_token}"
    ));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("href=\"/#step-paste\""), "{body}");
    assert!(body.contains("paste it into step 3"), "{body}");
    assert!(!body.contains("stale"), "{body}");

    // And the paste box (the page's own API) takes that very token.
    let (status, _, reply) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({ "request_token": request_token }),
    );
    assert_eq!(status, 200, "{reply}");
}

#[test]
fn kited_help_names_the_key_and_secret_variables_and_setup() {
    let out = std::process::Command::new(bin("kited"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in ["KITE_API_KEY", "KITE_API_SECRET", "kitectl setup"] {
        assert!(
            help.contains(needle),
            "{needle} missing from kited --help:\n{help}"
        );
    }
}
