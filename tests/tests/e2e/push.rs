//! Push to a phone: a real kited sends token events to the Telegram and ntfy simulators: retries,
//! a hanging channel, `kitectl push-test`, the config rules, secrets kept out of every byte kited
//! writes, and an idle daemon with two channels configured. The whole phone day (the push's Log in
//! link followed through Caddy in Chromium) is in the browser binary (`browser/phone.rs`).

use std::path::Path;
use std::time::{Duration, Instant};

use kite_tests::harness::eventually;
use kite_tests::ntfy_sim;
use kite_tests::push_sim::PushFault;
use kite_tests::Daemon;
use serde_json::{json, Value};

use crate::helper::phone::{Phone, ARRIVAL};
use crate::helper::{login_headless as log_in, text};

// ---------------------------------------------------------------------------------------------
// what the messages say

#[test]
fn the_reminder_carries_a_login_link_only_with_a_public_url() {
    let reminder = "Kite login needed: no valid token before market open";
    // A Tuesday, three seconds before the 08:45 IST reminder, nobody logged in.
    let before_reminder = "2026-11-24T08:44:57+05:30";
    let phone = Phone::new();
    let port = kite_tests::caddy::reserve_port();
    let public = kite_tests::caddy::public_url(port);
    let d = phone
        .daemon(&format!("public_url = \"{public}\""))
        .env("KITED_FAKE_NOW", before_reminder)
        .start();
    let message = phone
        .telegram
        .wait_for_message(reminder, Duration::from_secs(30));
    assert!(
        message
            .text
            .contains("the link works until 06:00 IST tomorrow"),
        "{}",
        message.text
    );
    let link = message.login_url().expect("a Log in button").to_string();
    assert!(link.starts_with(&format!("{public}/login?t=")), "{link}");
    let on_ntfy = phone.ntfy.wait_for_message(reminder, ARRIVAL);
    assert_eq!(on_ntfy.priority, 4);
    assert_eq!(
        on_ntfy.click.as_deref(),
        Some(link.as_str()),
        "one link per event"
    );
    // The link opens a login on the public host (what the proxy forwards).
    let host = format!("{}:{port}", kite_tests::caddy::PUBLIC_HOST);
    let path = link.trim_start_matches(&public);
    assert_eq!(d.http("GET", path, &[("Host", &host)], b"").status, 303);

    // Without http.public_url a link would be useless on a phone: none, and the text says where.
    let local = Phone::new();
    let _d = local
        .daemon("")
        .env("KITED_FAKE_NOW", before_reminder)
        .start();
    let message = local
        .telegram
        .wait_for_message(reminder, Duration::from_secs(30));
    assert!(message.buttons.is_empty(), "{message:?}");
    assert!(
        message
            .text
            .contains("Log in on the machine running kited: `kitectl login --open`."),
        "{}",
        message.text
    );
    let on_ntfy = local.ntfy.wait_for_message(reminder, ARRIVAL);
    assert_eq!(on_ntfy.click, None);
    assert!(on_ntfy.actions.is_empty());
}

// ---------------------------------------------------------------------------------------------
// delivery: retries, independence

#[test]
fn telegram_429_waits_retry_after_then_delivers_once() {
    let phone = Phone::new();
    phone
        .telegram
        .fault_next(1, PushFault::RateLimited { retry_after: 3 });
    let d = phone.daemon("").start();
    log_in(&d);
    phone.telegram.wait_for_message("Logged in as", ARRIVAL);
    let tries = phone.telegram.requests();
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert_eq!(tries[0].status, Some(429));
    let gap = tries[1].at - tries[0].at;
    // 3 s is longer than kited's own first backoff (2 s): only retry_after explains the wait.
    assert!(
        gap >= Duration::from_secs(3),
        "retried after {gap:?}, not retry_after"
    );
    assert_eq!(phone.telegram.messages().len(), 1);
    // ntfy was not held up by Telegram's wait.
    let ntfy = phone.ntfy.wait_for_message("Logged in as", ARRIVAL);
    assert!(ntfy.at < tries[1].at, "ntfy waited for Telegram's retry");
}

#[test]
fn server_errors_are_retried_three_times_at_most() {
    let phone = Phone::new();
    phone.telegram.fault_next(2, PushFault::Status(502));
    phone.ntfy.fault_next(3, PushFault::Status(503));
    let d = phone.daemon("").start();
    log_in(&d);
    phone
        .telegram
        .wait_for_message("Logged in as", Duration::from_secs(30));
    let tries = phone.telegram.requests();
    let statuses: Vec<_> = tries.iter().map(|t| t.status).collect();
    assert_eq!(statuses, vec![Some(502), Some(502), Some(200)]);
    assert!(tries[1].at - tries[0].at >= Duration::from_secs(2));
    assert!(tries[2].at - tries[1].at >= Duration::from_secs(5));
    // ntfy failed all three tries: kited gives up and says so once.
    eventually(Duration::from_secs(30), "ntfy's give-up line", || {
        d.log()
            .contains("push: ntfy failed token_new after 3 tries: HTTP 503")
    });
    assert_eq!(phone.ntfy.requests().len(), 3);
    assert!(phone.ntfy.messages().is_empty());
}

#[test]
fn a_refusal_is_logged_once_and_not_retried() {
    let phone = Phone::new();
    phone.telegram.fault_next(1, PushFault::Status(401));
    phone.ntfy.fault_next(1, PushFault::Status(401));
    let d = phone.daemon("").start();
    log_in(&d);
    eventually(ARRIVAL, "both refusals in the log", || {
        let log = d.log();
        log.contains("push: telegram refused token_new: HTTP 401: Unauthorized; not retrying")
            && log.contains("push: ntfy refused token_new: HTTP 401: unauthorized; not retrying")
    });
    // The delivery tasks have returned: nothing more can arrive for this event.
    assert_eq!(phone.telegram.requests().len(), 1);
    assert_eq!(phone.ntfy.requests().len(), 1);
    assert_eq!(d.log().matches("refused token_new").count(), 2);
}

#[test]
fn a_hanging_channel_delays_nothing_else() {
    let phone = Phone::new();
    phone.telegram.fault_next(5, PushFault::Hang);
    let d = phone.daemon("").start();
    log_in(&d);
    phone.telegram.wait_for_requests(1, ARRIVAL);
    // Telegram holds its request open; ntfy delivers at once.
    phone.ntfy.wait_for_message("Logged in as", ARRIVAL);
    for _ in 0..20 {
        let started = Instant::now();
        let out = d.ctl(&["get-token"]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(took < Duration::from_secs(1), "get-token took {took:?}");
        let started = Instant::now();
        assert_eq!(d.http("GET", "/healthz", &[], b"").status, 200);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    assert_eq!(phone.telegram.requests()[0].status, None, "still hanging");
}

// ---------------------------------------------------------------------------------------------
// kitectl push-test, check-config, config errors

#[test]
fn push_test_reports_each_channel_with_one_try() {
    let phone = Phone::new();
    let d = phone.daemon("").start();
    let out = d.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "telegram: ok\nntfy: ok\n");
    phone
        .telegram
        .wait_for_message("Test message from kited", ARRIVAL);
    phone
        .ntfy
        .wait_for_message("Test message from kited", ARRIVAL);

    phone.telegram.fault_next(1, PushFault::Status(502));
    let out = d.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "telegram: failed: HTTP 502: Internal Server Error\nntfy: ok\n"
    );
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );
    assert_eq!(phone.telegram.requests().len(), 2, "one try, no retry");

    let answer = d.request(&json!({"op": "push_test"}));
    assert_eq!(
        answer,
        json!({"ok": true, "results": [{"channel": "telegram", "ok": true}, {"channel": "ntfy", "ok": true}]})
    );

    let plain = Daemon::start(&phone.sim);
    let out = plain.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no push channel configured"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_lists_channels_and_a_missing_token_is_exit_78() {
    let phone = Phone::new();
    let d = phone.daemon("").start();
    let config = d.config_path().unwrap().to_str().unwrap().to_string();
    let out = d
        .kited_command(&["--config", &config, "check-config"])
        .env("KITED_TELEGRAM_BOT_TOKEN", phone.telegram.token())
        .env("KITED_NTFY_TOKEN", ntfy_sim::DEFAULT_TOKEN)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "chat {} via {}; bot token set (KITED_TELEGRAM_BOT_TOKEN)",
            phone.telegram.chat_id(),
            phone.telegram.api_root()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("access token set (KITED_NTFY_TOKEN)"),
        "{stdout}"
    );
    assert!(!stdout.contains(phone.telegram.token()) && !stdout.contains(ntfy_sim::DEFAULT_TOKEN));

    // Without the bot token (or the chat id) the daemon refuses to start: exit 78.
    let mut no_token = phone
        .daemon("")
        .env_remove("KITED_TELEGRAM_BOT_TOKEN")
        .spawn();
    let status = no_token
        .wait_exit(Duration::from_secs(10))
        .expect("kited exits");
    assert_eq!(status.code(), Some(78), "{}", no_token.log());
    assert!(
        no_token.log().contains("push.telegram.bot_token_file"),
        "{}",
        no_token.log()
    );
    let mut no_chat = Daemon::builder(&phone.sim)
        .config_toml(&format!(
            "[push.telegram]\napi_root = \"{}\"\n",
            phone.telegram.api_root()
        ))
        .env("KITED_TELEGRAM_BOT_TOKEN", phone.telegram.token())
        .spawn();
    let status = no_chat
        .wait_exit(Duration::from_secs(10))
        .expect("kited exits");
    assert_eq!(status.code(), Some(78));
    assert!(
        no_chat.log().contains("push.telegram.chat_id"),
        "{}",
        no_chat.log()
    );
}

// ---------------------------------------------------------------------------------------------
// secrets

/// Every file under `dir`, as bytes, with its path.
fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn channel_tokens_and_secrets_never_reach_a_log_or_a_state_file() {
    let phone = Phone::new();
    // Tokens from systemd's credentials directory this time.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("telegram-bot-token"),
        phone.telegram.token(),
    )
    .unwrap();
    std::fs::write(creds.path().join("ntfy-token"), ntfy_sim::DEFAULT_TOKEN).unwrap();
    let creds_dir = creds.path().to_str().unwrap();
    let d = phone
        .daemon("")
        .env_remove("KITED_TELEGRAM_BOT_TOKEN")
        .env_remove("KITED_NTFY_TOKEN")
        .env("CREDENTIALS_DIRECTORY", creds_dir)
        .env("RUST_LOG", "debug")
        .start();
    // Failures of every kind, so that every error path writes its line.
    phone.telegram.fault_next(1, PushFault::Status(401));
    phone
        .ntfy
        .fault_next(1, PushFault::RateLimited { retry_after: 1 });
    let access_token = log_in(&d);
    phone.ntfy.wait_for_message("Logged in as", ARRIVAL);
    eventually(ARRIVAL, "the Telegram refusal in the log", || {
        d.log().contains("push: telegram refused")
    });
    let out = d.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // Telegram unreachable: the error names no URL (it would carry the bot token).
    let unreachable = Daemon::builder(&phone.sim)
        .config_toml("[push.telegram]\nchat_id = \"1\"\napi_root = \"http://127.0.0.1:9\"\n")
        .env("CREDENTIALS_DIRECTORY", creds_dir)
        .env("RUST_LOG", "debug")
        .start();
    let out = unreachable.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(1));
    let line = text(&out.stdout);
    assert!(
        line.starts_with("telegram: failed: cannot reach the service"),
        "{line}"
    );

    let secrets = [
        ("bot token", phone.telegram.token().to_string()),
        ("ntfy token", ntfy_sim::DEFAULT_TOKEN.to_string()),
        ("api secret", phone.sim.api_secret()),
    ];
    for daemon in [&d, &unreachable] {
        let log = daemon.log();
        for (what, secret) in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "the {what} is in the log:\n{log}"
            );
        }
        assert!(
            !log.contains(&access_token),
            "the access token is in the log"
        );
        for (path, bytes) in all_files(daemon.state_dir()) {
            for (what, secret) in &secrets {
                assert!(!contains(&bytes, secret), "the {what} is in {path}");
            }
        }
    }
    assert!(!line.contains(phone.telegram.token()));
    for message in phone.telegram.messages() {
        assert!(!message.text.contains(&access_token));
    }
    for message in phone.ntfy.messages() {
        assert!(!message.message.contains(&access_token));
    }
}

// ---------------------------------------------------------------------------------------------
// an idle daemon with two channels sleeps

/// Context switches per thread of `pid` (voluntary + involuntary), from /proc.
pub(crate) fn switches(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let count: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum();
        out.push((task.file_name().to_string_lossy().into_owned(), count));
    }
    out
}

pub(crate) fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("comm")).unwrap_or_default())
        .collect()
}

#[test]
fn idle_with_two_push_channels_configured_means_zero_wakeups() {
    let window = std::env::var("KITED_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let phone = Phone::new();
    let d = phone.daemon("").start();
    // One delivery first, so any connection or timer it leaves behind would show.
    log_in(&d);
    phone.telegram.wait_for_message("Logged in as", ARRIVAL);
    phone.ntfy.wait_for_message("Logged in as", ARRIVAL);
    // Tokio's blocking threads (the store's flush) linger 10 s after their last job.
    eventually(
        Duration::from_secs(30),
        "the blocking threads to retire",
        || {
            thread_names(d.pid())
                .iter()
                .all(|name| !name.starts_with("tokio"))
        },
    );
    let before = switches(d.pid());
    std::thread::sleep(Duration::from_secs(window));
    let after = switches(d.pid());
    let woke: u64 = after
        .iter()
        .map(|(tid, n)| n - before.iter().find(|(t, _)| t == tid).map_or(0, |(_, b)| *b))
        .sum();
    eprintln!("idle with telegram + ntfy configured: {woke} wakeups in {window} s");
    assert_eq!(woke, 0, "before {before:?}, after {after:?}");
    let _: Value = d.request(&json!({"op": "ping"}));
}
