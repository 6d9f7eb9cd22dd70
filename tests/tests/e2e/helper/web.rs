//! The daemon's web side as the web and browser tests use it: a quiet daemon with a one-minute
//! warn window, GETs that must succeed, and what the simulator saw of the exchanges.

use chrono::Timelike;
use kite_tests::harness::free_port;
use kite_tests::http_client::HttpReply;
use kite_tests::{Daemon, Sim};
use serde_json::Value;

/// The config every web daemon gets, plus `extra` (other tables only): no desktop, and a warn
/// window of one minute so a fresh login reads `valid` at almost any time of day.
pub fn web_config(extra: &str) -> String {
    format!("[expiry]\nwarn_before = [\"1m\"]\n\n[notify]\ndesktop = false\n\n{extra}\n")
}

/// A daemon started with [`web_config`] and nothing extra.
pub fn web_daemon(sim: &Sim) -> Daemon {
    Daemon::builder(sim).config_toml(&web_config("")).start()
}

/// A daemon started with [`web_config`] that allows one cross-origin caller, a loopback origin
/// on a free port; returns it and that origin.
pub fn web_daemon_with_origin(sim: &Sim) -> (Daemon, String) {
    let allowed = format!("http://127.0.0.1:{}", free_port());
    let d = Daemon::builder(sim)
        .config_toml(&web_config(&format!(
            "[http]\nallowed_origins = [\"{allowed}\"]\n"
        )))
        .start();
    (d, allowed)
}

/// `GET path` on the daemon.
pub fn get(d: &Daemon, path: &str) -> HttpReply {
    d.http("GET", path, &[], b"")
}

/// `GET path` that must answer 200 with JSON; returns the JSON.
pub fn get_json(d: &Daemon, path: &str) -> Value {
    let reply = get(d, path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    assert_eq!(
        reply.media_type().as_deref(),
        Some("application/json"),
        "GET {path}"
    );
    reply.json()
}

/// How many request-token exchanges reached the simulator.
pub fn exchange_calls(sim: &Sim) -> usize {
    sim.calls_to("POST", "/session/token").len()
}

/// What `kitectl get-token` prints; asserts it succeeds.
pub fn ctl_token(d: &Daemon) -> String {
    let out = d.ctl(&["get-token"]);
    assert!(
        out.status.success(),
        "kitectl get-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The states a token made just now may be in: `valid`, or `expiring` in the last minute before
/// the 06:00 IST cutoff (the warn window of [`web_config`] is one minute).
pub fn fresh_states() -> &'static [&'static str] {
    let ist = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Kolkata);
    let minute = ist.hour() * 60 + ist.minute();
    if (5 * 60 + 58..=6 * 60 + 1).contains(&minute) {
        &["valid", "expiring"]
    } else {
        &["valid"]
    }
}
