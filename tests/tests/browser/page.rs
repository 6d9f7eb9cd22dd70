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
    assert_eq!(
        browser.text("#state").unwrap(),
        "–",
        "a symbol beside the label, not the raw state word"
    );
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

/// Where the progress list puts the person: the `data-step` of the current item, if any.
fn current_step(browser: &Browser) -> Option<String> {
    browser.attribute("#progress li.current", "data-step")
}

/// WCAG contrast of two `rgb(r, g, b)` colours.
fn contrast(a: &str, b: &str) -> f64 {
    let luminance = |css: &str| {
        let digits: Vec<f64> = css
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .filter(|p| !p.is_empty())
            .take(3)
            .map(|p| p.parse::<f64>().unwrap() / 255.0)
            .collect();
        let linear = |c: f64| {
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * linear(digits[0]) + 0.7152 * linear(digits[1]) + 0.0722 * linear(digits[2])
    };
    let (x, y) = (luminance(a), luminance(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

pub fn browser_page_guides_a_first_run() {
    let browser = Browser::launch("first-run");
    let sim = sim();

    // Not configured: no login button to press, the way to configure instead, step 1 current.
    let unconfigured = kite_tests::Daemon::builder(&sim).no_api_key().start();
    browser.goto(&format!("{}/", unconfigured.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = not-configured", |b| {
        state_is(b, &["not-configured"])
    });
    assert_eq!(
        browser.attribute("#login-button", "disabled").as_deref(),
        Some("true")
    );
    assert!(browser.displayed("#login-blocked"));
    assert!(browser
        .text("#login-blocked")
        .unwrap()
        .contains("kitectl setup"));
    assert_eq!(current_step(&browser).as_deref(), Some("setup"));
    let label = browser.text("#state-label").unwrap();
    let badge = browser.text("#state").unwrap();
    assert!(
        !badge.contains("not-configured") && !label.contains("not-configured"),
        "{badge} {label}"
    );
    browser.screenshot("first-run-1-not-configured");
    drop(unconfigured);

    // Configured, no token: step 2; after a login, the last step; after a logout, no "yet".
    let d = web_daemon(&sim);
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = none", |b| {
        state_is(b, &["none"])
    });
    assert_eq!(browser.attribute("#login-button", "disabled"), None);
    assert!(!browser.displayed("#login-blocked"));
    assert_eq!(current_step(&browser).as_deref(), Some("login"));
    crate::helper::login_headless(&d);
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "#state = valid", |b| {
        state_is(b, &["valid"])
    });
    assert_eq!(current_step(&browser).as_deref(), Some("use"));
    let done = browser.js(
        "return Array.from(document.querySelectorAll('#progress li.done')).map(e => e.dataset.step);",
        &[],
    );
    assert_eq!(done, json!(["setup", "login", "token"]));
    browser.screenshot("first-run-2-valid");
    let out = d.ctl(&["logout"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    browser.goto(&format!("{}/", d.base_url()));
    browser.wait_until(Duration::from_secs(10), "a state after logout", |b| {
        state_is(b, &["none", "invalidated"])
    });
    let expires = browser.text("#expires").unwrap();
    assert!(!expires.contains("yet"), "after a logout: {expires}");

    // The footer's links are readable: at least 4.5:1 against the page.
    let colours = browser.js(
        "const a = document.querySelector('footer a'); \
         return [getComputedStyle(a).color, getComputedStyle(document.body).backgroundColor];",
        &[],
    );
    let ratio = contrast(colours[0].as_str().unwrap(), colours[1].as_str().unwrap());
    assert!(
        ratio >= 4.5,
        "footer link contrast {ratio:.2}:1 ({colours})"
    );

    // kited goes away: at the page's next status poll (every 30 s) the banner says how to
    // start it.
    let mut d = d;
    d.terminate();
    browser.wait_until(Duration::from_secs(45), "the not-reachable banner", |b| {
        b.text("#error")
            .is_ok_and(|t| t.contains("systemctl --user start kited"))
    });
    assert_eq!(current_step(&browser), None);
    browser.screenshot("first-run-3-unreachable");
    assert_no_console_errors_except_unreachable(&browser);
}

/// Console errors other than the failed status polls of a stopped kited.
fn assert_no_console_errors_except_unreachable(browser: &Browser) {
    let errors: Vec<String> = browser
        .console_errors()
        .into_iter()
        .filter(|e| {
            !e.contains("api/token/status")
                && !e.contains("Failed to fetch")
                && !e.contains("ERR_CONNECTION_REFUSED")
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
