//! kited's own page in headless Chromium: the login button's round trip through the simulator,
//! the paste box (bad, hostile and good pastes, Kite refusing a used token), revealing the
//! token, and the layout on a phone.

use std::time::Duration;

use kite_tests::webdriver::Browser;
use serde_json::json;

use crate::helper::{ctl_token, exchange_calls, fresh_states, sim, web_daemon};

/// Fails the test on console errors (script errors, CSP violations, failed loads).
pub fn assert_no_console_errors(browser: &Browser, when: &str) {
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "console errors {when}: {errors:#?}");
}

fn state_is(browser: &Browser, wanted: &[&str]) -> bool {
    browser
        .attribute("#state", "data-state")
        .is_some_and(|s| wanted.contains(&s.as_str()))
}

pub fn browser_login_button_round_trip() {
    let browser = Browser::launch("login");
    let sim = sim();
    let d = web_daemon(&sim);
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = none", |b| {
        state_is(b, &["none"])
    });
    assert_eq!(browser.text("#state").unwrap(), "none");
    assert_eq!(browser.text("#state-label").unwrap(), "Login required");
    assert_eq!(
        browser.text("#callback-url").unwrap(),
        d.callback_url(),
        "the page shows the redirect URL to register"
    );
    browser.screenshot("1-login-required");
    assert_no_console_errors(&browser, "loading /");

    // What a cancelled login looks like (a clear failure page, styled, no script errors).
    browser.goto(&format!("{}/auth/callback?status=cancelled", d.base_url()));
    browser.wait_text("#callback-title", "the failure page", |t| {
        t.ends_with("Login failed")
    });
    assert!(browser
        .text("#callback-message")
        .unwrap()
        .contains("cancelled"));
    assert!(browser.displayed("#back"));
    browser.screenshot("1b-cancelled");
    let _ = browser.console(); // its 400 status is logged as a failed load: expected
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = none", |b| {
        state_is(b, &["none"])
    });

    // Click → sim login page → 302 → kited's /auth/callback.
    browser.click("#login-button");
    browser.wait_until(Duration::from_secs(10), "the callback page", |b| {
        b.text("#callback-message")
            .is_ok_and(|t| t.contains("Logged in as Kite Tester"))
    });
    let url = browser.current_url();
    assert!(
        url.starts_with(&format!("{}/auth/callback?", d.base_url())),
        "ended on {url}"
    );
    assert!(browser
        .text("#callback-title")
        .unwrap()
        .ends_with("Logged in"));
    assert!(
        browser
            .text("#callback-message")
            .unwrap()
            .contains("you can close this tab"),
        "{}",
        browser.page_text()
    );
    browser.screenshot("2-callback");
    let token = ctl_token(&d);
    assert!(!browser.page_text().contains(&token));
    assert_eq!(sim.calls_to("GET", "/connect/login").len(), 1);
    assert_no_console_errors(&browser, "on the callback page");

    // Back to the page: valid, the user's name, and no token on show.
    browser.click("#back");
    browser.wait_until(Duration::from_secs(10), "#state = valid", |b| {
        state_is(b, fresh_states())
    });
    browser.wait_text("#user-name", "the user's name", |t| t == "Kite Tester");
    assert_eq!(browser.text("#user-id").unwrap(), "(AB1234)");
    assert!(browser
        .text("#expires")
        .unwrap()
        .starts_with("Expires at 06:00 IST"));
    assert!(
        !browser.displayed("#token"),
        "the token is hidden by default"
    );
    assert!(!browser.displayed("#token-box"));
    assert_eq!(browser.text("#token").unwrap(), "");
    let dom = browser.js("return document.documentElement.outerHTML", &[]);
    assert!(
        !dom.as_str().unwrap().contains(&token),
        "the DOM holds the token"
    );
    browser.screenshot("3-valid");
    assert_no_console_errors(&browser, "after the login");
}

pub fn browser_paste_box_and_reveal() {
    let browser = Browser::launch("paste");
    let sim = sim();
    let d = web_daemon(&sim);
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = none", |b| {
        state_is(b, &["none"])
    });

    // A bad paste first: no token in it → the page says why, nothing reaches Kite.
    browser.type_into(
        "#paste-input",
        "https://example.com/whatever?status=success",
    );
    browser.click("#paste-submit");
    let error = browser.wait_text("#error", "an error for a bad paste", |t| !t.is_empty());
    assert!(error.contains("No request_token found"), "{error}");
    // Markup pasted as a token is refused and shown as text, never run.
    browser.type_into(
        "#paste-input",
        "http://127.0.0.1/auth/callback?request_token=<img src=x onerror=window.__pwned=1>",
    );
    browser.click("#paste-submit");
    browser.wait_text("#error", "an error for a markup paste", |t| {
        t.contains("does not look valid")
    });
    assert_eq!(
        browser.js("return window.__pwned === undefined", &[]),
        json!(true)
    );
    assert_eq!(exchange_calls(&sim), 0);

    // The good paste: the whole redirected URL.
    let request_token = sim.issue_request_token();
    let pasted = format!(
        "{}?action=login&type=login&status=success&request_token={request_token}",
        d.callback_url()
    );
    browser.type_into("#paste-input", &pasted);
    browser.screenshot("1-pasted");
    browser.click("#paste-submit");
    let result = browser.wait_text("#result", "Logged in as", |t| t.contains("Logged in as"));
    assert!(
        result.contains("Logged in as Kite Tester (AB1234)"),
        "{result}"
    );
    assert!(browser.text("#error").unwrap_or_default().is_empty());
    browser.wait_until(Duration::from_secs(10), "#state = valid", |b| {
        state_is(b, fresh_states())
    });
    let token = ctl_token(&d);
    assert!(browser.displayed("#token-box"));
    assert!(!browser.displayed("#token"), "token hidden until revealed");
    assert_eq!(browser.text("#token").unwrap(), "");
    browser.screenshot("2-result");
    browser.click("#reveal-token");
    browser.wait_until(Duration::from_secs(5), "the revealed token", |b| {
        b.text("#token").is_ok_and(|t| t == token)
    });
    assert_eq!(browser.text("#reveal-token").unwrap(), "Hide");
    browser.screenshot("3-revealed");
    browser.click("#reveal-token");
    assert!(!browser.displayed("#token"));
    assert_no_console_errors(&browser, "during a good paste");

    // Pasting the same URL again: Kite refuses the used request token; the page says so.
    browser.type_into("#paste-input", &pasted);
    browser.click("#paste-submit");
    let error = browser.wait_text("#error", "Kite's refusal", |t| !t.is_empty());
    assert!(
        error.contains("Failed to generate access token")
            && error.contains("Token is invalid or has expired"),
        "{error}"
    );
    assert!(
        !browser.displayed("#token-box"),
        "a failure hides the old token"
    );
    browser.screenshot("4-refused");
    let _ = browser.console(); // the 400 is logged as a failed load: expected here
    assert_eq!(exchange_calls(&sim), 2);

    // A phone.
    browser.set_window_size(390, 844);
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = valid", |b| {
        state_is(b, fresh_states())
    });
    browser.screenshot("5-phone");
    let overflow = browser.js(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        &[],
    );
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "the page scrolls sideways on a phone by {overflow}px"
    );
    browser.js("window.scrollTo(0, document.body.scrollHeight)", &[]);
    browser.screenshot("6-phone-bottom");
    assert_no_console_errors(&browser, "on a phone");
}
