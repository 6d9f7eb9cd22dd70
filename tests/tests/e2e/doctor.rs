//! `kitectl doctor` and the `doctor` op against a real kited: every check passing, then each
//! failure in turn (a killed token, Kite hanging or gone, the wrong egress IP, an echo that
//! sends garbage, a skewed clock, a failing push channel), the exit codes, and a hanging echo
//! that holds up no other client.

use std::process::Stdio;
use std::time::{Duration, Instant};

use kite_tests::harness::eventually;
use kite_tests::push_sim::PushFault;
use kite_tests::sim::Fault;
use kite_tests::{Daemon, DaemonBuilder, Sim};
use serde_json::Value;

use crate::helper::ip_echo::{Echo, IpEcho};
use crate::helper::phone::{Phone, ARRIVAL};
use crate::helper::{login_headless, sim, text, toml_string, ChildGuard};

/// The address the tests register; the echo answers it unless told otherwise.
const REGISTERED: &str = "203.0.113.7";
/// What the echo says when the host sends from somewhere else.
const ELSEWHERE: &str = "198.51.100.9";

/// A daemon checking `echo` against [`REGISTERED`], with a short Kite timeout so the hanging
/// cases end quickly.
fn builder(sim: &Sim, echo: &IpEcho, timeout: &str) -> DaemonBuilder {
    Daemon::builder(sim).config_toml(&format!(
        "[kite]\ntimeout = \"{timeout}\"\n\n[notify]\ndesktop = false\n\n[readiness]\n\
         static_ips = [\"{REGISTERED}\"]\nip_echo_url = {}\n",
        toml_string(&echo.url())
    ))
}

/// `kitectl doctor`: (exit code, stdout lines, stderr).
fn doctor(d: &Daemon) -> (Option<i32>, Vec<String>, String) {
    let out = d.ctl(&["doctor"]);
    let lines = text(&out.stdout).lines().map(str::to_string).collect();
    (out.status.code(), lines, text(&out.stderr))
}

/// `kitectl doctor --json`: (exit code, the printed object).
fn doctor_json(d: &Daemon) -> (Option<i32>, Value) {
    let out = d.ctl(&["doctor", "--json"]);
    let value: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed {:?}: {e}", text(&out.stdout)));
    (out.status.code(), value)
}

/// The line for check `name`, panicking with all of them when there is none.
fn line<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} line in {lines:#?}"))
}

fn failed_names(value: &Value) -> Vec<String> {
    value["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// Prints the lines of one failure mode (the report quotes them) and returns them.
fn shown(mode: &str, d: &Daemon, expect_code: i32) -> Vec<String> {
    let (code, lines, stderr) = doctor(d);
    eprintln!("--- doctor, {mode} (exit {code:?}):\n{}", lines.join("\n"));
    assert_eq!(code, Some(expect_code), "{mode}: {lines:#?} {stderr}");
    lines
}

#[test]
fn doctor_passes_then_names_each_failure() {
    let sim = sim();
    let echo = IpEcho::start(Echo::Text(format!("{REGISTERED}\n")));
    let d = builder(&sim, &echo, "2s").start();

    // No token yet: only the token check fails, and it says how to log in.
    let lines = shown("no token", &d, 1);
    assert!(
        line(&lines, "token").contains("kitectl login --open"),
        "{lines:#?}"
    );

    login_headless(&d);
    let lines = shown("all ok", &d, 0);
    let names: Vec<&str> = lines.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(names, ["token", "kite", "ip", "clock", "sinks", "push"]);
    assert_eq!(
        line(&lines, "token"),
        "token: ok \u{2014} logged in as Kite Tester (AB1234) until 06:00 IST"
    );
    assert!(line(&lines, "ip").starts_with(&format!(
        "ip: ok \u{2014} this host sends from {REGISTERED}"
    )));
    assert_eq!(line(&lines, "sinks"), "sinks: ok \u{2014} none configured");
    assert_eq!(line(&lines, "push"), "push: ok \u{2014} none configured");
    let (code, json) = doctor_json(&d);
    assert_eq!(code, Some(0));
    assert_eq!(
        json.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["checks"]
    );
    assert_eq!(json["checks"].as_array().unwrap().len(), 6);
    assert_eq!(json["checks"][0]["name"], "token");
    assert_eq!(json["checks"][0]["ok"], true);
    // The op itself.
    let answer = d.request(&serde_json::json!({"op": "doctor"}));
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["checks"].as_array().unwrap().len(), 6);

    // The host sends from an address that is not registered.
    echo.set(Echo::Text(ELSEWHERE.into()));
    let lines = shown("ip mismatch", &d, 1);
    assert!(
        line(&lines, "ip").starts_with(&format!(
            "ip: failed \u{2014} this host sends from {ELSEWHERE}, registered: {REGISTERED}"
        )),
        "{lines:#?}"
    );
    assert_eq!(failed_names(&doctor_json(&d).1), ["ip"]);

    // The echo sends a page, then a megabyte: a clear failure, not a hang or a crash.
    echo.set(Echo::Html);
    let lines = shown("ip echo answers HTML", &d, 1);
    assert!(
        line(&lines, "ip").contains("did not answer an IP address"),
        "{lines:#?}"
    );
    assert!(line(&lines, "ip").contains("<html>"), "{lines:#?}");
    echo.set(Echo::Megabyte);
    let lines = shown("ip echo answers a megabyte", &d, 1);
    assert!(
        line(&lines, "ip").contains("more than 4096 bytes"),
        "{lines:#?}"
    );
    echo.set(Echo::Text(REGISTERED.into()));

    // Kite's clock says half a minute later than kited's.
    sim.set_date_offset(30);
    let lines = shown("clock skew", &d, 1);
    assert!(
        line(&lines, "clock").contains("30 s behind Kite's")
            && line(&lines, "clock").contains("timedatectl"),
        "{lines:#?}"
    );
    assert_eq!(failed_names(&doctor_json(&d).1), ["clock"]);
    sim.set_date_offset(0);

    // Kite accepts the call and never answers: kite.timeout (2 s), then a clear failure.
    sim.set_fault(1, Fault::Hang);
    let started = Instant::now();
    let lines = shown("kite hanging", &d, 1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        line(&lines, "kite").contains("did not answer within 2s"),
        "{lines:#?}"
    );
    assert!(
        line(&lines, "token").contains("could not confirm"),
        "{lines:#?}"
    );
    // A hang says nothing about the token: it still works.
    assert_eq!(shown("after the hang", &d, 0).len(), 6);

    // Kite killed the token early: failed, and the token is invalidated as the periodic check does.
    sim.kill_all_access_tokens();
    let lines = shown("token killed at Kite", &d, 1);
    assert!(
        line(&lines, "token").contains("Kite refused the token"),
        "{lines:#?}"
    );
    assert!(line(&lines, "token").contains("invalidated"), "{lines:#?}");
    assert_eq!(
        crate::helper::status(&d).state,
        kite_proto::TokenState::Invalidated
    );
    let out = d.ctl(&["get-token"]);
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn doctor_when_kite_is_down_and_when_kited_is_down() {
    let sim = sim();
    let echo = IpEcho::start(Echo::Text(REGISTERED.into()));
    // Nothing listens on this port: Kite is unreachable.
    let dead = format!("http://127.0.0.1:{}", kite_tests::harness::free_port());
    let mut d = builder(&sim, &echo, "2s")
        .env("KITE_API_ROOT", &dead)
        .start();
    let lines = shown("kite down", &d, 1);
    assert!(
        line(&lines, "kite").contains("cannot reach Kite"),
        "{lines:#?}"
    );
    assert!(
        line(&lines, "clock").starts_with("clock: failed"),
        "{lines:#?}"
    );
    // The ip check does not depend on Kite.
    assert!(line(&lines, "ip").starts_with("ip: ok"), "{lines:#?}");
    d.terminate();
    let (code, lines, stderr) = doctor(&d);
    eprintln!("--- doctor, kited down (exit {code:?}): {}", stderr.trim());
    assert_eq!(code, Some(3), "{lines:?} {stderr}");
    assert!(stderr.contains("not running"), "{stderr}");
}

#[test]
fn a_failing_push_channel_fails_the_push_check_until_a_delivery_works() {
    let phone = Phone::new();
    // Telegram refuses (401: not retried); ntfy delivers.
    phone.telegram.fault_next(1, PushFault::Status(401));
    let d = phone.daemon("").start();
    let (code, json) = doctor_json(&d);
    assert_eq!(code, Some(1), "{json}");
    let push = &json["checks"][4];
    assert_eq!(push["name"], "push", "{json}");
    assert_eq!(push["ok"], true, "nothing sent yet is fine: {json}");
    login_headless(&d);
    phone.ntfy.wait_for_message("Logged in as", ARRIVAL);
    eventually(ARRIVAL, "telegram's refusal", || {
        phone
            .telegram
            .requests()
            .iter()
            .any(|r| r.status == Some(401))
    });
    let mut lines = Vec::new();
    eventually(ARRIVAL, "the push check to fail", || {
        lines = doctor(&d).1;
        line(&lines, "push").starts_with("push: failed")
    });
    eprintln!("--- doctor, push failing:\n{}", lines.join("\n"));
    let push = line(&lines, "push");
    assert!(
        push.contains("telegram: last delivery failed (HTTP 401"),
        "{push}"
    );
    assert!(push.contains("ntfy: last delivery succeeded"), "{push}");
    assert!(push.contains("kitectl push-test"), "{push}");
    // A test message that gets through clears it.
    let out = d.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = shown("after a good push-test", &d, 0);
    assert!(line(&lines, "push").starts_with("push: ok"), "{lines:#?}");
}

#[test]
fn a_hanging_echo_delays_no_other_client() {
    let sim = sim();
    let echo = IpEcho::start(Echo::Hang);
    let d = builder(&sim, &echo, "5s").start();
    login_headless(&d);
    let started = Instant::now();
    let doctor = d
        .ctl_command(&["doctor"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kitectl doctor");
    let guard = ChildGuard(Some(doctor));
    eventually(Duration::from_secs(5), "doctor to reach the echo", || {
        echo.connections() >= 1
    });
    // While the echo hangs: get-token (the process, best of three so the machine's own hiccups
    // do not count), the socket and HTTP all answer at once.
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let out = d.ctl(&["get-token"]);
        best = best.min(t.elapsed());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
    }
    let t = Instant::now();
    assert_eq!(d.request(&serde_json::json!({"op": "ping"}))["ok"], true);
    let socket = t.elapsed();
    let t = Instant::now();
    let (status, _, _) = d.http_get("/api/token/status");
    let http = t.elapsed();
    assert_eq!(status, 200);
    eprintln!(
        "while doctor waits on a hanging echo: kitectl get-token {best:?}, socket ping {socket:?}, \
         HTTP status {http:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the measurement ran past the hang"
    );
    assert!(
        best < Duration::from_millis(100),
        "kitectl get-token took {best:?}"
    );
    assert!(socket < Duration::from_millis(100) && http < Duration::from_millis(100));
    // The doctor itself ends at kite.timeout with the echo named.
    let (status, stdout, _) = guard.wait(Duration::from_secs(30), "kitectl doctor");
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("did not answer within 5s"), "{stdout}");
    assert!(stdout.contains("token: ok"), "{stdout}");
}

#[test]
fn readiness_config_is_checked_at_start_and_shown_by_check_config() {
    let sim = sim();
    for (table, key) in [
        ("at = \"8:5O\"", "readiness.at"),
        ("static_ips = [\"my-server\"]", "readiness.static_ips"),
        (
            "ip_echo_url = \"http://ip.example.com/\"",
            "readiness.ip_echo_url",
        ),
    ] {
        let mut d = Daemon::builder(&sim)
            .config_toml(&format!("[readiness]\n{table}\n"))
            .spawn();
        let status = d
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("kited ran with {table}"));
        assert_eq!(status.code(), Some(78), "{table}: {}", d.log());
        assert!(d.log().contains(key), "{table}: {}", d.log());
    }
    let d = Daemon::builder(&sim)
        .config_toml(
            "[readiness]\nstatic_ips = [\"203.0.113.7\", \"203.0.113.8\", \"203.0.113.9\"]\n",
        )
        .start();
    assert!(d.log().contains("at most 2"), "{}", d.log());
    let config = d.config_path().unwrap().to_str().unwrap().to_string();
    let out = d
        .kited_command(&["--config", &config, "check-config"])
        .output()
        .unwrap();
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown} {}", text(&out.stderr));
    assert!(shown.contains("readiness.at"), "{shown}");
    assert!(shown.contains("08:50 IST"), "{shown}");
    assert!(
        shown.contains("203.0.113.7, 203.0.113.8, 203.0.113.9"),
        "{shown}"
    );
    assert!(
        shown.contains("warning: readiness.static_ips lists 3 addresses"),
        "{shown}"
    );
}
