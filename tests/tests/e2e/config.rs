//! Configuration at start: a missing api key or secret, a broken config file.

use std::time::Duration;

use kite_tests::Daemon;

use crate::helper::ctl::{code, ctl_fails, ctl_ok, ctl_status_json, describe, one_error_line};
use crate::helper::{daemon_lines, sim};
use serde_json::json;

#[test]
fn without_api_key_the_daemon_runs_and_says_not_configured() {
    let sim = sim();
    let daemon = Daemon::builder(&sim).no_api_key().start();

    let status = ctl_status_json(&daemon);
    assert_eq!(status["configured"], json!(false), "{status}");
    assert_eq!(status["state"], json!("none"), "{status}");
    ctl_ok(&daemon, &["status"]);

    let line = ctl_fails(&daemon, &["login"], 1);
    assert!(line.contains("KITE_API_KEY"), "{line}");
    let line = ctl_fails(&daemon, &["exchange", &sim.issue_request_token()], 1);
    assert!(line.contains("KITE_API_KEY"), "{line}");

    // get-token: not_configured, which kitectl maps to 1 (4 would also honour "no valid token").
    let out = daemon.ctl(&["get-token"]);
    assert!(
        matches!(code(&out), Some(1) | Some(4)),
        "{}",
        describe(&["get-token"], &out)
    );
    let line = one_error_line(&["get-token"], &out);
    assert!(line.contains("KITE_API_KEY"), "{line}");

    for op in ["login_url", "exchange"] {
        let mut request = json!({"op": op});
        if op == "exchange" {
            request["request_token"] = json!("abc123");
        }
        let answer = daemon.request(&request);
        assert_eq!(
            answer["error"]["kind"],
            json!("not_configured"),
            "{op}: {answer}"
        );
    }
    // The callback cannot reach Kite either.
    let path = format!(
        "/auth/callback?status=success&request_token={}&state=abc",
        sim.issue_request_token()
    );
    let (status, _, page) = daemon.http_get(&path);
    assert!(status >= 400, "{status}: {page}");
    assert!(
        sim.calls().is_empty(),
        "nothing should reach Kite: {:#?}",
        sim.calls()
    );
}

#[test]
fn without_api_secret_the_daemon_says_not_configured() {
    let sim = sim();
    let daemon = Daemon::builder(&sim).no_api_secret().start();
    let status = ctl_status_json(&daemon);
    assert_eq!(status["configured"], json!(false), "{status}");
    assert_eq!(status["state"], json!("none"), "{status}");
    let line = ctl_fails(&daemon, &["login"], 1);
    assert!(line.contains("KITE_API_SECRET"), "{line}");
    assert!(sim.calls().is_empty());
}

// 12. Configuration

#[test]
fn broken_config_file_stops_kited_with_one_line_naming_it() {
    let sim = sim();
    for toml in [
        "this is [not toml\n",
        "[kite]\napi_key = 5\n",
        "[expiry]\ncutoff = \"25:99\"\n",
    ] {
        let mut daemon = Daemon::builder(&sim).config_toml(toml).spawn();
        let status = daemon
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("kited kept running with a broken config {toml:?}"));
        assert!(!status.success(), "{toml:?}: {status}");
        let log = daemon.log();
        let lines = daemon_lines(&log);
        assert_eq!(lines.len(), 1, "{toml:?}: expected one line, got:\n{log}");
        let config = daemon.config_path().unwrap().display().to_string();
        if toml.contains("cutoff") {
            // A bad value may be named by its key rather than the file.
            assert!(
                lines[0].contains(&config) || lines[0].contains("expiry.cutoff"),
                "{toml:?}: {}",
                lines[0]
            );
        } else {
            assert!(
                lines[0].contains(&config),
                "{toml:?}: the line should name {config}: {}",
                lines[0]
            );
        }
        assert!(
            !daemon.socket_path().exists(),
            "{toml:?}: no socket should be left"
        );
    }
}
