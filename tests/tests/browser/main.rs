//! kited's page and JS widgets in a real headless Chromium, driven through chromedriver against
//! the real `kited` and the Kite simulator.
//!
//! This binary has its own runner (libtest-mimic; `harness = false` in Cargo.toml) so that a
//! machine without Chromium reports these tests as ignored (`cargo test`) or skipped
//! (`cargo nextest`) and says how to install it, instead of counting them as passed. With
//! `CI=true` or `KITED_REQUIRE_BROWSER=1` a missing browser fails them instead.

// The fixtures are the e2e binary's; this binary uses only some of them.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/helper/mod.rs"]
mod helper;

mod page;
mod phone;
mod widgets;

use kite_tests::webdriver::{self, INSTALL_HINT};
use libtest_mimic::{Arguments, Trial};

/// Every browser test, by name.
const TESTS: &[(&str, fn())] = &[
    (
        "page::browser_login_button_round_trip",
        page::browser_login_button_round_trip,
    ),
    (
        "page::browser_page_guides_a_first_run",
        page::browser_page_guides_a_first_run,
    ),
    (
        "page::browser_paste_box_and_reveal",
        page::browser_paste_box_and_reveal,
    ),
    (
        "phone::phone_day_expiry_push_then_login_from_the_phone_through_caddy",
        phone::phone_day_expiry_push_then_login_from_the_phone_through_caddy,
    ),
    (
        "widgets::browser_widgets_from_another_origin",
        widgets::browser_widgets_from_another_origin,
    ),
];

fn main() {
    let args = Arguments::from_args();
    let missing = webdriver::missing();
    let skip = !missing.is_empty() && !webdriver::browser_required();
    if skip && !args.list {
        let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "SKIPPED {} browser tests: {} not installed; install with `{INSTALL_HINT}`",
            TESTS.len(),
            names.join(" and ")
        );
    }
    let trials = TESTS
        .iter()
        .map(|&(name, test)| {
            Trial::test(name, move || {
                test();
                Ok(())
            })
            .with_ignored_flag(skip)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
