//! The phone day in a real browser: the 06:00 expiry (on kited's fake clock) arrives on the
//! Telegram and ntfy simulators with a Log in button; headless Chromium, resolving the public
//! name to 127.0.0.1 and accepting Caddy's internal CA, follows it through a real Caddy over
//! HTTPS to the Kite simulator's login and back to kited's public callback; the token is stored
//! and the "Logged in as" push arrives.

use std::time::Duration;

use kite_tests::caddy::{self, Caddy, PUBLIC_HOST};
use kite_tests::webdriver::Browser;
use serde_json::json;

use crate::helper::login_headless as log_in;
use crate::helper::phone::{Phone, ARRIVAL};

pub fn phone_day_expiry_push_then_login_from_the_phone_through_caddy() {
    let browser = Browser::launch_with_args(
        "phone-day",
        &[
            format!("--host-resolver-rules=MAP {PUBLIC_HOST} 127.0.0.1"),
            "--ignore-certificate-errors".to_string(),
        ],
    );
    let phone = Phone::new();
    let port = caddy::reserve_port();
    let public = caddy::public_url(port);
    phone
        .sim
        .set_redirect_url(&format!("{public}/auth/callback"));
    // Yesterday's login; kited's clock starts ten seconds before today's 06:00 cutoff.
    phone.sim.set_login_time(Some("2026-11-23 09:15:00".into()));
    let d = phone
        .daemon(&format!("public_url = \"{public}\""))
        .keep_redirect()
        .env("KITED_FAKE_NOW", "2026-11-24T05:59:50+05:30")
        .start();
    let caddy = Caddy::start(port, d.http_addr());
    log_in(&d);
    phone
        .telegram
        .wait_for_message("Logged in as Kite Tester (AB1234)", ARRIVAL);

    // 06:00: the push arrives with a Log in button carrying a login link.
    let expired = phone
        .telegram
        .wait_for_message("the token expired at 06:00 IST", Duration::from_secs(40));
    assert_eq!(expired.chat_id, phone.telegram.chat_id());
    assert!(
        expired
            .text
            .starts_with("Kite login needed: the token expired at 06:00 IST"),
        "{}",
        expired.text
    );
    let link = expired.login_url().expect("a Log in button").to_string();
    assert!(link.starts_with(&format!("{public}/login?t=")), "{link}");
    let on_ntfy = phone
        .ntfy
        .wait_for_message("the token expired at 06:00 IST", ARRIVAL);
    assert_eq!(on_ntfy.priority, 4);
    assert_eq!(on_ntfy.title.as_deref(), Some("Kite login needed"));
    let click = on_ntfy.click.clone().expect("a Click URL");
    assert!(click.starts_with(&format!("{public}/login?t=")), "{click}");
    assert_eq!(
        on_ntfy.actions,
        vec![("view".to_string(), "Log in".to_string(), click.clone())]
    );

    // The phone taps it: kited (through Caddy, over TLS) → Kite's login → the public callback.
    phone.sim.set_login_time(Some("2026-11-24 06:00:20".into()));
    browser.goto(&link);
    browser.wait_until(Duration::from_secs(20), "the callback page", |b| {
        b.text("#callback-message")
            .is_ok_and(|t| t.contains("Logged in as Kite Tester"))
    });
    let landed = browser.current_url();
    assert!(
        landed.starts_with(&format!("{public}/auth/callback?")),
        "ended on {landed}"
    );
    browser.screenshot("phone-callback");
    assert_eq!(phone.sim.calls_to("GET", "/connect/login").len(), 1);
    assert!(caddy.log().len() < 1_000_000);

    // The token is stored, and the phone hears who logged in and until when.
    let token = d.request(&json!({"op": "get_token"}));
    assert_eq!(
        token["expires_at"],
        json!("2026-11-25T06:00:00+05:30"),
        "{token}"
    );
    let confirmed = phone.telegram.wait_for_message(
        "Logged in as Kite Tester (AB1234); valid until 06:00 IST tomorrow",
        ARRIVAL,
    );
    assert!(confirmed.buttons.is_empty(), "{confirmed:?}");
    assert!(!browser
        .page_text()
        .contains(token["access_token"].as_str().unwrap()));
    let ntfy_confirmed = phone
        .ntfy
        .wait_for_message("valid until 06:00 IST tomorrow", ARRIVAL);
    assert_eq!(ntfy_confirmed.priority, 3);
    assert_eq!(ntfy_confirmed.click, None);
}
