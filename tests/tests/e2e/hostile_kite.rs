//! Hostile or wrong answers from Kite: a token of another api key, unusable answers, control characters in Kite's text.

use std::io::{BufRead, BufReader, Write};

use kite_tests::{Daemon, Sim, SimConfig};
use serde_json::{json, Value};

use crate::helper::{sim, text};

#[test]
fn a_token_of_another_api_key_is_no_token() {
    let demo = sim();
    let mut first = Daemon::start(&demo);
    let answer =
        first.request(&json!({"op": "exchange", "request_token": demo.issue_request_token()}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let state_dir = first.state_dir().to_path_buf();
    first.terminate();

    // The real app, on the same state dir (the demo's leftovers).
    let real = Sim::start(SimConfig {
        api_key: "realappkey000002".into(),
        ..SimConfig::default()
    });
    let second = Daemon::builder(&real).state_dir(&state_dir).start();
    let status = second.request(&json!({"op": "status"}));
    assert_eq!(status["status"]["state"], json!("none"), "{status}");
    assert!(status["status"]["user_id"].is_null(), "{status}");
    assert_eq!(
        status["status"]["api_key"],
        json!("realappkey000002"),
        "{status}"
    );
    for args in [&["get-token"][..], &["env"]] {
        let out = second.ctl(args);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed: {}",
            text(&out.stdout)
        );
    }
    drop(second);

    // Back under the demo's key, its token is still there.
    let third = Daemon::builder(&demo).state_dir(&state_dir).start();
    let token = third.request(&json!({"op": "get_token"}));
    assert_eq!(token["ok"], json!(true), "{token}");
    assert_eq!(token["api_key"], json!(demo.api_key()));
}

// 5. Kite's fields are validated

/// Kite's naive IST `login_time` for now plus `offset`.
fn ist_login_time(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset)
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[test]
fn unusable_answers_from_kite_are_refused_and_nothing_is_stored() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let refused = |why: &str| {
        let answer =
            daemon.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
        assert_eq!(answer["ok"], json!(false), "{why}: {answer}");
        assert_eq!(answer["error"]["kind"], json!("kite"), "{why}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("kited refused Kite's answer"),
            "{why}: {message}"
        );
        assert!(!message.chars().any(char::is_control), "{why}: {message:?}");
        let status = daemon.request(&json!({"op": "status"}));
        assert_eq!(status["status"]["state"], json!("none"), "{why}: {status}");
    };
    for token in [
        "",
        "has space",
        "line\nbreak",
        "nul\0byte",
        "esc\u{1b}[2Jape",
        "tab\tx",
    ] {
        sim.set_next_access_token(token);
        refused(&format!("access token {token:?}"));
    }
    sim.set_login_time(Some(ist_login_time(chrono::Duration::days(2))));
    refused("a login_time two days ahead");
    sim.set_login_time(Some(ist_login_time(-chrono::Duration::days(10 * 365))));
    refused("a login_time ten years back");
    sim.set_login_time(None);
    let out = daemon.ctl(&["get-token"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
}

#[test]
fn control_characters_in_kites_text_never_reach_terminal_log_or_events() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let mut watch = daemon.connect_ipc();
    watch.write_all(b"{\"op\":\"watch\"}\n").unwrap();
    let mut events = BufReader::new(watch.try_clone().unwrap());
    let mut line = String::new();
    events.read_line(&mut line).unwrap();
    sim.set_user(
        "AB1234",
        "Kite\u{1b}[31m Tester\nKITE_ACCESS_TOKEN=stolen\u{7}",
    );
    let answer =
        daemon.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let name = answer["status"]["user_name"].as_str().unwrap().to_string();
    assert_eq!(name, "Kite[31m TesterKITE_ACCESS_TOKEN=stolen");
    let out = daemon.ctl(&["status"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("Kite[31m Tester"), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    line.clear();
    events.read_line(&mut line).unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], json!("token_new"), "{event}");
    assert!(!line.trim_end().chars().any(char::is_control), "{line:?}");
    assert!(!line.contains("\\u001b") && !line.contains("\\n"), "{line}");
    let log = daemon.log();
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log:?}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("KITE_ACCESS_TOKEN=stolen")),
        "{log}"
    );
}

// 8. Pending logins cannot be flushed out
