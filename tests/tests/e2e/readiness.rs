//! The morning: at `readiness.at` (08:50 IST) on a trading day kited runs the readiness checks and
//! says `market_ready` or `market_not_ready` once, to watch and to push; `login_required` repeats
//! every `readiness.reminder_every` until a login. Driven with `KITED_FAKE_NOW` (and the
//! simulator's `Date` moved to match), never real minutes. Also: an idle daemon with readiness
//! configured sleeps between its planned moments.

use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kite_tests::harness::eventually;
use kite_tests::{Daemon, Sim};
use serde_json::{json, Value};

use crate::helper::ip_echo::{Echo, IpEcho};
use crate::helper::phone::{Phone, ARRIVAL};
use crate::helper::{login_headless, rfc3339, sim, toml_string};

/// Monday 23 Nov 2026, a trading day: the login's time, so the token lives until 06:00 Tuesday.
const LOGIN_TIME: &str = "2026-11-23 08:40:00";
/// How long an event that is due may take to show.
const WAIT: Duration = Duration::from_secs(15);

/// Moves the simulator's `Date` to the fake clock kited will start on, so the clock check holds.
fn sim_on(sim: &Sim, fake_now: &str) {
    let offset = rfc3339(fake_now).with_timezone(&Utc) - Utc::now();
    sim.set_date_offset(offset.num_seconds());
    sim.set_login_time(Some(LOGIN_TIME.into()));
}

/// A `watch` on the socket: events arrive on the channel.
fn watch(d: &Daemon) -> mpsc::Receiver<Value> {
    let stream = d.connect_ipc();
    stream.set_read_timeout(None).unwrap();
    (&stream).write_all(b"{\"op\":\"watch\"}\n").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(&stream).lines() {
            let Ok(line) = line else { break };
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                break;
            };
            if tx.send(value).is_err() {
                break;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    let first = rx.recv_timeout(WAIT).expect("watch: no first line");
    assert_eq!(first, json!({"ok": true}));
    rx
}

/// The next event named `name` within `within`; others go into `seen`.
fn expect(
    rx: &mpsc::Receiver<Value>,
    name: &str,
    within: Duration,
    seen: &mut Vec<Value>,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) if event["event"] == name => return event,
            Ok(event) => seen.push(event),
            Err(_) => panic!("no {name} within {within:?}; saw {seen:#?}"),
        }
    }
}

fn names(event: &Value) -> Vec<String> {
    event["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks: {event}"))
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn market_ready_at_0850_with_every_check() {
    let fake_now = "2026-11-23T08:49:56+05:30";
    let sim = sim();
    sim_on(&sim, fake_now);
    let echo = IpEcho::start(Echo::Text("203.0.113.7".into()));
    let d = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\n\n[readiness]\nstatic_ips = [\"203.0.113.7\"]\n\
             ip_echo_url = {}\n",
            toml_string(&echo.url())
        ))
        .env("KITED_FAKE_NOW", fake_now)
        .start();
    let events = watch(&d);
    login_headless(&d);
    let mut seen = Vec::new();
    let ready = expect(&events, "market_ready", WAIT, &mut seen);
    assert_eq!(
        names(&ready),
        ["token", "kite", "ip", "clock", "sinks", "push"]
    );
    assert!(
        ready["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{ready}"
    );
    assert!(rfc3339(ready["at"].as_str().unwrap()) >= rfc3339("2026-11-23T08:50:00+05:30"));
    assert_eq!(echo.connections(), 1, "one check, one echo call");
    // Once: nothing more is due until tomorrow (the next thing planned is the 30-minute verify).
    assert!(
        events.recv_timeout(Duration::from_secs(2)).is_err(),
        "a second event after market_ready"
    );
}

#[test]
fn market_not_ready_lists_every_check_and_reaches_the_phone() {
    let fake_now = "2026-11-23T08:49:57+05:30";
    let phone = Phone::new();
    sim_on(&phone.sim, fake_now);
    let d = phone.daemon("").env("KITED_FAKE_NOW", fake_now).start();
    let events = watch(&d);
    let mut seen = Vec::new();
    let not_ready = expect(&events, "market_not_ready", WAIT, &mut seen);
    // Every check, failed or not; no ip check without static IPs.
    assert_eq!(
        names(&not_ready),
        ["token", "kite", "clock", "sinks", "push"]
    );
    let failed: Vec<&str> = not_ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["token"], "{not_ready}");
    let message = phone
        .telegram
        .wait_for_message("Not ready for the market", ARRIVAL);
    assert!(
        message.text.contains("token: no valid token"),
        "{}",
        message.text
    );
    // Without http.public_url there is no link; the text says where to log in instead.
    assert!(message.buttons.is_empty(), "{message:?}");
    assert!(
        message.text.contains("kitectl login --open"),
        "{}",
        message.text
    );
    phone
        .ntfy
        .wait_for_message("Not ready for the market", ARRIVAL);
}

#[test]
fn login_required_repeats_until_a_login() {
    // Two seconds before the 08:45 reminder; repeats every 2 s.
    let fake_now = "2026-11-23T08:44:58+05:30";
    let sim = sim();
    sim_on(&sim, fake_now);
    let d = Daemon::builder(&sim)
        .config_toml("[notify]\ndesktop = false\n\n[readiness]\nreminder_every = \"2s\"\n")
        .env("KITED_FAKE_NOW", fake_now)
        .start();
    let events = watch(&d);
    let mut seen = Vec::new();
    let first = expect(&events, "login_required", WAIT, &mut seen);
    let second = expect(&events, "login_required", WAIT, &mut seen);
    let third = expect(&events, "login_required", WAIT, &mut seen);
    let at = |e: &Value| rfc3339(e["at"].as_str().unwrap());
    assert!(
        at(&first) >= rfc3339("2026-11-23T08:45:00+05:30"),
        "{first}"
    );
    for (a, b) in [(&first, &second), (&second, &third)] {
        let gap = at(b) - at(a);
        assert!(
            gap >= chrono::Duration::seconds(2) && gap < chrono::Duration::seconds(4),
            "reminders {gap} apart: {a} {b}"
        );
    }
    // A login stops them at once: after token_new, no reminder for three repeat periods.
    login_headless(&d);
    expect(&events, "token_new", WAIT, &mut seen);
    let deadline = Instant::now() + Duration::from_secs(6);
    while let Ok(event) = events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        assert_ne!(
            event["event"], "login_required",
            "a reminder after the login: {event}"
        );
    }
}

#[test]
fn idle_with_readiness_configured_means_zero_wakeups_between_planned_moments() {
    let window = std::env::var("KITED_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let fake_now = "2026-11-23T08:49:57+05:30";
    let phone = Phone::new();
    sim_on(&phone.sim, fake_now);
    let echo = IpEcho::start(Echo::Text("203.0.113.7".into()));
    // Both push channels, the IP check and a repeating reminder: everything readiness adds.
    let d = Daemon::builder(&phone.sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\n\n[readiness]\nstatic_ips = [\"203.0.113.7\"]\n\
             ip_echo_url = {}\nreminder_every = \"15m\"\n\n{}",
            toml_string(&echo.url()),
            phone.push_toml()
        ))
        .env("KITED_TELEGRAM_BOT_TOKEN", phone.telegram.token())
        .env("KITED_NTFY_TOKEN", kite_tests::ntfy_sim::DEFAULT_TOKEN)
        .env("KITED_FAKE_NOW", fake_now)
        .start();
    let events = watch(&d);
    login_headless(&d);
    let mut seen = Vec::new();
    expect(&events, "market_ready", WAIT, &mut seen);
    phone
        .telegram
        .wait_for_message("Ready for the market", ARRIVAL);
    phone.ntfy.wait_for_message("Ready for the market", ARRIVAL);
    drop(events);
    // Tokio's blocking threads (the store's flush) linger 10 s after their last job.
    eventually(
        Duration::from_secs(30),
        "the blocking threads to retire",
        || {
            crate::push::thread_names(d.pid())
                .iter()
                .all(|name| !name.starts_with("tokio"))
        },
    );
    let before = crate::push::switches(d.pid());
    std::thread::sleep(Duration::from_secs(window));
    let after = crate::push::switches(d.pid());
    let woke: u64 = after
        .iter()
        .map(|(tid, n)| n - before.iter().find(|(t, _)| t == tid).map_or(0, |(_, b)| *b))
        .sum();
    eprintln!("idle with [readiness] (ip check, reminders) and two push channels: {woke} wakeups in {window} s");
    assert_eq!(woke, 0, "before {before:?}, after {after:?}");
}
