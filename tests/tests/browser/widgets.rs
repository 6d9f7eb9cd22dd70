//! The JS widgets on another origin: the status indicator, `ensureValidToken` and the refresh
//! widget's paste box, from an allowed origin (CORS with preflight) and from one that is not.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use kite_tests::harness::eventually;
use kite_tests::webdriver::Browser;
use kite_tests::Daemon;

use crate::helper::{exchange_calls, fresh_states, get, get_json, sim, web_config};
use crate::page::assert_no_console_errors;

/// A one-page HTTP server on 127.0.0.1 (another origin than kited) for the widget test.
struct TestSite {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestSite {
    fn start(listener: TcpListener, html: String) -> TestSite {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let first = String::from_utf8_lossy(&head);
                let reply = if first.starts_with("GET / ") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{html}",
                        html.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        TestSite {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn widget_page(kited: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>a trading dashboard</title>
<link rel="icon" href="data:,">
<script src="{kited}/static/kite-token-flow.js"></script></head>
<body>
<h1>Dashboard on another origin</h1>
<div id="s"></div>
<div id="b"></div>
<p id="ensure">pending</p>
<script>
createTokenStatusIndicator('s', {{ intervalMs: 1000 }});
createTokenRefreshButton('b');
ensureValidToken().then(
  function (s) {{ document.getElementById('ensure').textContent = 'ok ' + s.user_name; }},
  function (e) {{ document.getElementById('ensure').textContent = 'error ' + e.message; }});
</script>
</body></html>
"#
    )
}

pub fn browser_widgets_from_another_origin() {
    let browser = Browser::launch("widgets");
    let sim = sim();
    let allowed_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_origin = format!(
        "http://127.0.0.1:{}",
        allowed_listener.local_addr().unwrap().port()
    );
    let d = Daemon::builder(&sim)
        .config_toml(&web_config(&format!(
            "[http]\nallowed_origins = [\"{allowed_origin}\"]\n"
        )))
        .start();
    let page = widget_page(&d.base_url());
    let allowed = TestSite::start(allowed_listener, page.clone());
    let other = TestSite::start(other_listener, page);

    // Allowed origin, before any login: the indicator shows `none`, ensureValidToken rejects.
    browser.goto(&allowed.url());
    browser.wait_until(
        Duration::from_secs(10),
        "indicator data-state = none",
        |b| b.attribute(".kite-status", "data-state").as_deref() == Some("none"),
    );
    let ensure = browser.wait_text("#ensure", "ensureValidToken's answer", |t| t != "pending");
    assert!(ensure.starts_with("error Kite login required"), "{ensure}");
    assert!(
        browser.displayed(".kite-status-login"),
        "a Log in button appears"
    );
    browser.screenshot("1-allowed-none");
    assert_no_console_errors(&browser, "on the allowed origin");

    // The refresh widget's paste box: a cross-origin POST (with preflight) that kited allows.
    browser.type_into(".kite-refresh-input", &sim.issue_request_token());
    browser.click(".kite-refresh-submit");
    let message = browser.wait_text(".kite-refresh-message", "the widget's result", |t| {
        t.starts_with("Logged in") || t.contains("Failed")
    });
    assert!(message.contains("Logged in as Kite Tester"), "{message}");
    assert_eq!(exchange_calls(&sim), 1);
    // The indicator follows by polling; ensureValidToken now resolves.
    browser.wait_until(
        Duration::from_secs(10),
        "indicator data-state = valid",
        |b| {
            b.attribute(".kite-status", "data-state")
                .is_some_and(|s| fresh_states().contains(&s.as_str()))
        },
    );
    assert_eq!(
        browser.attribute(".kite-status", "data-state").unwrap(),
        get_json(&d, "/api/token/status")["state"].as_str().unwrap(),
        "the indicator shows the daemon's state"
    );
    assert!(!browser.displayed(".kite-status-login"));
    let state = browser.js(
        "return ensureValidToken().then(function (s) { return 'ok ' + s.state + ' ' + s.user_name; }, \
         function (e) { return 'error ' + e.message; })",
        &[],
    );
    assert!(
        state
            .as_str()
            .is_some_and(|s| s.starts_with("ok ") && s.ends_with("Kite Tester")),
        "{state}"
    );
    browser.screenshot("2-allowed-valid");
    assert_no_console_errors(&browser, "after the widget login");

    // An origin not in the allow-list: the script loads, but every fetch is blocked.
    browser.goto(&other.url());
    browser.wait_until(
        Duration::from_secs(10),
        "indicator data-state = unreachable",
        |b| b.attribute(".kite-status", "data-state").as_deref() == Some("unreachable"),
    );
    let ensure = browser.wait_text("#ensure", "ensureValidToken's answer", |t| t != "pending");
    assert!(
        ensure.starts_with("error kited is not reachable"),
        "{ensure}"
    );
    browser.type_into(".kite-refresh-input", &sim.issue_request_token());
    browser.click(".kite-refresh-submit");
    let message = browser.wait_text(".kite-refresh-message", "the widget's failure", |t| {
        t.contains("not reachable")
    });
    assert!(!message.contains("Logged in"), "{message}");
    browser.screenshot("3-other-origin");
    assert_eq!(
        exchange_calls(&sim),
        1,
        "the disallowed origin's POST never reached Kite"
    );
    let errors = browser.console_errors();
    assert!(
        errors.iter().any(|e| e.contains("CORS")),
        "the browser blocked the fetches by CORS: {errors:#?}"
    );
    eventually(Duration::from_secs(1), "the daemon is still fine", || {
        get(&d, "/healthz").status == 200
    });
}
