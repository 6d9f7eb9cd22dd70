//! The login reminder schedule: trading days only, holidays and weekends skipped.

use std::time::Duration;

use kite_tests::harness::Daemon;

use crate::helper::events::{logout, Watch};
use crate::helper::{login_headless, rfc3339, sim};

const EVERY_SECOND: &str = "*/1 * * * * *";

#[test]
fn reminder_fires_on_trading_days_without_a_token_only() {
    let sim = sim();
    // Monday 2026-11-23, a trading day.
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!("[expiry]\nreminder = \"{EVERY_SECOND}\"\n"))
        .env("KITED_FAKE_NOW", "2026-11-23T08:44:50+05:30")
        .start();
    let mut watch = Watch::socket(&daemon);
    let reminder = watch.expect_within("login_required", Duration::from_secs(3));
    let url = reminder["login_url"]
        .as_str()
        .expect("login_url in the reminder");
    assert!(url.starts_with(&sim.login_url()), "{url}");
    assert!(url.contains(&format!("api_key={}", sim.api_key())), "{url}");

    // With a valid token: no reminder. Nothing can show that a reminder was rightly not sent
    // except waiting, so this waits a bounded 3 s (three reminder ticks). The reminder check and
    // its event happen in one step with no await between, so once token_new has been read, any
    // later login_required would be a bug.
    login_headless(&daemon);
    watch.expect("token_new");
    watch.assert_none_within("login_required", Duration::from_secs(3));
    // ...and the reminder was still running: without a token it comes back.
    logout(&daemon);
    watch.expect("token_invalidated");
    watch.expect_within("login_required", Duration::from_secs(3));
}

#[test]
fn reminder_skips_holidays() {
    let sim = sim();
    // Monday 2026-11-23 is listed as a holiday; Tuesday is not. Starting 3 s before midnight,
    // the first reminder must come at or after midnight: the ticks before it fell on the
    // holiday. (This replaces a negative wait with a positive observation.)
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[expiry]\nreminder = \"{EVERY_SECOND}\"\nholidays = [\"2026-11-23\"]\n"
        ))
        .env("KITED_FAKE_NOW", "2026-11-23T23:59:57+05:30")
        .start();
    let mut watch = Watch::socket(&daemon);
    let reminder = watch.expect_within("login_required", Duration::from_secs(6));
    let at = rfc3339(reminder["at"].as_str().unwrap());
    assert!(
        at >= rfc3339("2026-11-24T00:00:00+05:30"),
        "a reminder on the holiday: {reminder}"
    );
    assert!(watch.seen.is_empty(), "{:?}", watch.seen);
}

#[test]
fn reminder_skips_weekends() {
    let sim = sim();
    // Sunday 2026-11-29 23:59:57: the first reminder is Monday's.
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!("[expiry]\nreminder = \"{EVERY_SECOND}\"\n"))
        .env("KITED_FAKE_NOW", "2026-11-29T23:59:57+05:30")
        .start();
    let mut watch = Watch::socket(&daemon);
    let reminder = watch.expect_within("login_required", Duration::from_secs(6));
    assert!(
        rfc3339(reminder["at"].as_str().unwrap()) >= rfc3339("2026-11-30T00:00:00+05:30"),
        "a reminder on Sunday: {reminder}"
    );
}

// 5. notify.command
