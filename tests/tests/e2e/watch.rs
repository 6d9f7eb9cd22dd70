//! `kitectl watch` and the token's events: new, invalidated, expiry warning and expiry, the periodic check.

use std::fs;

use kite_proto::TokenState;
use kite_tests::harness::{eventually, Daemon};
use kite_tests::sim::Fault;

use crate::helper::events::{before_cutoff, logout, scratch, Watch, CUTOFF, LOGIN_TIME, WAIT};
use crate::helper::{get_token, login_headless, rfc3339, sim, status, toml_string};

#[test]
fn watch_streams_token_new_and_invalidated_without_the_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let mut ctl = Watch::kitectl(&daemon);
    let mut raw = Watch::socket(&daemon);

    let token = login_headless(&daemon);
    for watch in [&mut ctl, &mut raw] {
        let (line, event) = watch.next_line();
        assert_eq!(event["event"], "token_new", "{line}");
        assert_eq!(event["user_id"], "AB1234", "{line}");
        assert_eq!(event["user_name"], "Kite Tester", "{line}");
        rfc3339(event["expires_at"].as_str().unwrap());
        assert!(!line.contains(&token), "the access token is in {line}");
        assert!(
            !line.contains(&sim.api_secret()),
            "the api secret is in {line}"
        );
    }

    logout(&daemon);
    for watch in [&mut ctl, &mut raw] {
        let (line, event) = watch.next_line();
        assert_eq!(event["event"], "token_invalidated", "{line}");
        assert!(
            event["reason"]
                .as_str()
                .is_some_and(|r| r.contains("logged out")),
            "{line}"
        );
        assert!(!line.contains(&token), "the access token is in {line}");
    }
}

// 2. warnings and expiry on a fake clock

#[test]
fn expiry_warning_then_expiry_on_a_fake_clock() {
    let sim = sim();
    sim.set_login_time(Some(LOGIN_TIME.into()));
    let files = scratch();
    let env_file = files.path().join("kite.env");
    let config = format!(
        "[expiry]\nwarn_before = [\"15m\", \"1m\"]\n[hooks]\nenv_file = {}\n",
        toml_string(&env_file.display().to_string())
    );

    // Run 1: three seconds before the 15-minute warning.
    let mut first = Daemon::builder(&sim)
        .config_toml(&config)
        .env("KITED_FAKE_NOW", &before_cutoff(15 * 60 + 3))
        .start();
    let mut watch = Watch::socket(&first);
    let token = login_headless(&first);
    assert_eq!(status(&first).expires_at.as_deref(), Some(CUTOFF));
    watch.expect("token_new");
    let warning = watch.expect("token_expiring");
    assert_eq!(warning["minutes_left"], 15, "{warning}");
    assert_eq!(warning["expires_at"], CUTOFF, "{warning}");
    assert!(
        rfc3339(warning["at"].as_str().unwrap()) >= rfc3339(CUTOFF) - chrono::Duration::minutes(15)
    );
    assert_eq!(status(&first).state, TokenState::Expiring);
    drop(watch);
    first.terminate();

    // Run 2, on the same state: a few seconds before the cutoff.
    let second = Daemon::builder(&sim)
        .config_toml(&config)
        .state_dir(first.state_dir())
        .env("KITED_FAKE_NOW", &before_cutoff(4))
        .start();
    let mut watch = Watch::socket(&second);
    assert_eq!(
        get_token(&second),
        token,
        "the stored token is served until the cutoff"
    );
    let expired = watch.expect("token_expired");
    assert_eq!(expired["expires_at"], CUTOFF, "{expired}");
    assert!(rfc3339(expired["at"].as_str().unwrap()) >= rfc3339(CUTOFF));
    assert_eq!(status(&second).state, TokenState::Expired);
    assert!(status(&second).needs_refresh);
    let out = second.ctl(&["get-token"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "get-token after the cutoff: {out:?}"
    );
    assert!(out.stdout.is_empty(), "get-token printed {:?}", out.stdout);
    eventually(WAIT, "the env file to drop the expired token", || {
        fs::read_to_string(&env_file).is_ok_and(|t| t.contains("KITE_ACCESS_TOKEN=\n"))
    });
    let text = fs::read_to_string(&env_file).unwrap();
    assert!(!text.contains(&token), "{text}");
    assert!(
        text.contains(&format!("KITE_API_KEY={}\n", sim.api_key())),
        "{text}"
    );
}

// 3. the periodic profile check

#[test]
fn periodic_check_invalidates_killed_tokens_but_not_on_transient_faults() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[kite]\ntimeout = \"1s\"\n[expiry]\nverify_every = \"1s\"\n")
        .start();
    let mut watch = Watch::socket(&daemon);
    let token = login_headless(&daemon);
    watch.expect("token_new");
    let profile_calls = || sim.calls_to("GET", "/user/profile");
    // The check repeats.
    eventually(WAIT, "two successful profile checks", || {
        profile_calls()
            .iter()
            .filter(|c| c.status == Some(200))
            .count()
            >= 2
    });
    // Checks run one at a time, and a call is logged when it arrives: so a call with `status`
    // made after the fault was queued, followed by a good one, means that fault was handled.
    let fault_then_good = |since: usize, status: Option<u16>| {
        let calls = profile_calls();
        let calls = calls.get(since..).unwrap_or_default();
        calls
            .iter()
            .position(|c| c.status == status)
            .is_some_and(|i| calls[i + 1..].iter().any(|c| c.status == Some(200)))
    };

    // A 503 is transient.
    let since = profile_calls().len();
    sim.fail_next(1, 503);
    eventually(WAIT, "a check answered 503, then a good one", || {
        fault_then_good(since, Some(503))
    });
    assert_eq!(status(&daemon).state, TokenState::Valid);

    // So is a Kite that never answers (kite.timeout = 1s).
    let since = profile_calls().len();
    sim.set_fault(1, Fault::Hang);
    eventually(WAIT, "a hung check, then a good one", || {
        fault_then_good(since, None)
    });
    assert_eq!(status(&daemon).state, TokenState::Valid);
    assert_eq!(get_token(&daemon), token);
    assert!(daemon.log().contains("will try again"), "{}", daemon.log());

    // A token Kite killed is caught by the next check. It is the first event after token_new:
    // the faults above invalidated nothing.
    sim.kill_access_token(&token);
    let (line, event) = watch.next_line();
    assert_eq!(event["event"], "token_invalidated", "{line}");
    assert!(!line.contains(&token), "{line}");
    assert_eq!(status(&daemon).state, TokenState::Invalidated);
    let out = daemon.ctl(&["get-token"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

// 4. the pre-market reminder
