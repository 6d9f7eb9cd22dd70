//! A hostile push endpoint against a real kited: a huge `retry_after`, a decompression bomb, an
//! endless answer, a credential echoed back in some encoding, and plain-HTTP endpoints off
//! loopback. kited must stay up, small and quiet about its credentials.

use std::io::Write;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use kite_tests::harness::eventually;
use kite_tests::hostile_http::{HostileAnswer, HostileServer};
use kite_tests::ntfy_sim;
use kite_tests::push_sim::PushFault;
use kite_tests::telegram_sim::DEFAULT_BOT_TOKEN;
use kite_tests::Daemon;

use crate::helper::phone::{Phone, ARRIVAL};
use crate::helper::{login_headless as log_in, sim, status, text};

/// The secret half of the tests' bot token (`ID:SECRET`): what must never be shown.
fn bot_secret() -> &'static str {
    DEFAULT_BOT_TOKEN
        .split_once(':')
        .expect("a bot token is ID:SECRET")
        .1
}

/// A kited whose Telegram channel is `api_root`, with the tests' bot token.
fn daemon_with_telegram(api_root: &str) -> Daemon {
    Daemon::builder(&sim())
        .config_toml(&format!(
            "[notify]\ndesktop = false\n\n[push.telegram]\nchat_id = \"1\"\napi_root = \"{api_root}\"\n"
        ))
        .env("KITED_TELEGRAM_BOT_TOKEN", DEFAULT_BOT_TOKEN)
        .start()
}

/// kited's peak resident memory, from /proc.
fn peak_rss_kib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn a_huge_retry_after_gives_up_instead_of_crashing() {
    let phone = Phone::new();
    // A server error first (kited waits its backoff, seconds), then 2^64-1 seconds from
    // Telegram's `parameters.retry_after` and from ntfy's Retry-After: added to the time
    // already spent, that overflows.
    phone.telegram.fault_next(1, PushFault::Status(502));
    phone.ntfy.fault_next(1, PushFault::Status(502));
    phone.telegram.fault_next(
        1,
        PushFault::RateLimited {
            retry_after: u64::MAX,
        },
    );
    phone.ntfy.fault_next(
        1,
        PushFault::RateLimited {
            retry_after: u64::MAX,
        },
    );
    let mut d = phone.daemon("").start();
    log_in(&d);
    eventually(ARRIVAL, "both give-up lines", || {
        let log = d.log();
        log.contains("push: telegram failed token_new: HTTP 429")
            && log.contains("push: ntfy failed token_new: HTTP 429")
            && log.matches("would be too late, giving up").count() == 2
    });
    assert!(d.is_running(), "kited died:\n{}", d.log());
    assert!(!d.log().contains("panicked"), "{}", d.log());
    assert_eq!(phone.telegram.requests().len(), 2, "no retry after the 429");
    assert_eq!(phone.ntfy.requests().len(), 2, "no retry after the 429");
    assert!(status(&d).valid, "kited still serves");
}

#[test]
fn the_push_client_asks_for_no_compression_and_ignores_a_bomb() {
    // 256 MiB of zeros, gzipped (~250 KiB), behind a JSON error text that only an inflating
    // client could read.
    let mut bomb = GzEncoder::new(Vec::new(), Compression::best());
    bomb.write_all(br#"{"ok":false,"error_code":400,"description":"INFLATED "#)
        .unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..256 {
        bomb.write_all(&zeros).unwrap();
    }
    bomb.write_all(br#""}"#).unwrap();
    let bomb = bomb.finish().unwrap();
    let server = HostileServer::start(move |_| {
        HostileAnswer::with_body(
            400,
            &["Content-Type: application/json", "Content-Encoding: gzip"],
            &bomb,
        )
    });
    let d = daemon_with_telegram(&server.url());
    let out = d.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "telegram: failed: HTTP 400: no description\n"
    );
    let head = server.requests()[0].head.to_ascii_lowercase();
    assert!(
        !head.contains("accept-encoding"),
        "kited offered compression:\n{head}"
    );
    let peak = peak_rss_kib(&d);
    assert!(peak < 64 * 1024, "kited grew to {peak} KiB");
}

#[test]
fn an_endless_answer_is_read_only_so_far() {
    const LIMIT: u64 = 256 << 20;
    let server = HostileServer::start(|_| HostileAnswer::Endless {
        head: "HTTP/1.1 500 Hostile\r\nContent-Type: application/json".into(),
        limit: LIMIT,
    });
    let d = daemon_with_telegram(&server.url());
    let out = d.ctl(&["push-test"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "telegram: failed: HTTP 500: no description\n"
    );
    // What the kernel buffers hold on loopback is a few MiB; kited itself read 64 KiB.
    let taken = server.body_bytes_taken();
    assert!(taken < 32 << 20, "kited read {taken} bytes of the answer");
    let peak = peak_rss_kib(&d);
    assert!(peak < 64 * 1024, "kited grew to {peak} KiB");
}

#[test]
fn an_echoed_credential_never_reaches_the_log_or_push_test() {
    let secret = bot_secret();
    let b64 = |text: &str| {
        // A small standard base64 encoder, so the test does not share kited's.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in text.as_bytes().chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    };
    let percent: String =
        url::form_urlencoded::byte_serialize(DEFAULT_BOT_TOKEN.as_bytes()).collect();
    let json_escaped: String = DEFAULT_BOT_TOKEN
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    // Each is the `description` of a Telegram error; the JSON text is what goes on the wire.
    let descriptions = [
        format!("\"Unauthorized: bot{DEFAULT_BOT_TOKEN} \\u001b[31mred\\u0007\""),
        format!("\"Unauthorized: /bot{percent}/sendMessage\""),
        format!("\"Unauthorized: {json_escaped}\""),
        format!("\"Basic {}\"", b64(&format!("bot:{DEFAULT_BOT_TOKEN}"))),
        format!("\"{}\"", b64(&format!("x{secret}"))),
    ];
    let bodies: Vec<Vec<u8>> = descriptions
        .iter()
        .map(|d| format!(r#"{{"ok":false,"error_code":401,"description":{d}}}"#).into_bytes())
        .collect();
    let count = bodies.len();
    let server = HostileServer::start(move |n| {
        HostileAnswer::with_body(
            401,
            &["Content-Type: application/json"],
            &bodies[n % bodies.len()],
        )
    });
    // The ntfy token, echoed in base64 by a hostile ntfy.
    let ntfy_token = ntfy_sim::DEFAULT_TOKEN;
    let ntfy_body = format!(r#"{{"error":"token {} refused"}}"#, b64(ntfy_token));
    let ntfy = HostileServer::start(move |_| {
        HostileAnswer::with_body(
            401,
            &["Content-Type: application/json"],
            ntfy_body.as_bytes(),
        )
    });
    let d = Daemon::builder(&sim())
        .config_toml(&format!(
            "[notify]\ndesktop = false\n\n[push.telegram]\nchat_id = \"1\"\napi_root = \"{}\"\n\n[push.ntfy]\nurl = \"{}/topic\"\n",
            server.url(),
            ntfy.url()
        ))
        .env("KITED_TELEGRAM_BOT_TOKEN", DEFAULT_BOT_TOKEN)
        .env("KITED_NTFY_TOKEN", ntfy_token)
        .start();
    let mut shown = String::new();
    for _ in 0..count {
        let out = d.ctl(&["push-test"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with("telegram: failed: HTTP 401: "),
            "{stdout}"
        );
        shown.push_str(&stdout);
        shown.push_str(&text(&out.stderr));
    }
    assert_eq!(server.requests().len(), count);
    shown.push_str(&d.log());
    let ntfy_secret = ntfy_token.trim_start_matches("tk_");
    for (what, needle) in [
        ("the bot token's secret", secret.to_string()),
        ("its first half", secret[..secret.len() / 2].to_string()),
        ("its second half", secret[secret.len() / 2..].to_string()),
        ("the ntfy token", ntfy_secret.to_string()),
    ] {
        assert!(
            !shown.to_lowercase().contains(&needle.to_lowercase()),
            "{what} was shown:\n{shown}"
        );
    }
    // Encoded forms: every base64 run long enough to carry half of a secret is checked by
    // decoding it.
    for word in shown.split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/')) {
        if word.len() < 16 {
            continue;
        }
        for skip in 0..4 {
            let decoded = decode_b64(&word[skip..]);
            assert!(
                !decoded.contains(&secret[..12]) && !decoded.contains(&ntfy_secret[..12]),
                "a base64 echo was shown: {word}\n{shown}"
            );
        }
    }
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "control characters reached the output:\n{shown:?}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
}

/// Lossy base64 decoding (standard alphabet, no padding), for the check above.
fn decode_b64(text: &str) -> String {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.chars() {
        let Some(v) = ALPHABET.find(c) else { break };
        bits = bits << 6 | v as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn plain_http_push_endpoints_off_loopback_are_refused() {
    let sim = sim();
    for (table, key, value) in [
        ("push.telegram", "api_root", "http://api.telegram.example"),
        ("push.ntfy", "url", "http://ntfy.example/topic"),
    ] {
        let extra = if table == "push.telegram" {
            "chat_id = \"1\"\n"
        } else {
            ""
        };
        let mut d = Daemon::builder(&sim)
            .config_toml(&format!("[{table}]\n{extra}{key} = \"{value}\"\n"))
            .env("KITED_TELEGRAM_BOT_TOKEN", DEFAULT_BOT_TOKEN)
            .spawn();
        let exit = d
            .wait_exit(Duration::from_secs(10))
            .expect("kited refuses to start");
        assert_eq!(exit.code(), Some(78), "{}", d.log());
        assert!(
            d.log().contains(&format!("{table}.{key}")),
            "the error names the key:\n{}",
            d.log()
        );
        let config = d.config_path().unwrap().to_str().unwrap().to_string();
        let out = d
            .kited_command(&["--config", &config, "check-config"])
            .env("KITED_TELEGRAM_BOT_TOKEN", DEFAULT_BOT_TOKEN)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{}", text(&out.stdout));
    }
}
