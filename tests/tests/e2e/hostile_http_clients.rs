//! Hostile HTTP clients: oversized requests, slowloris, bad Host, forged and injected callbacks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use kite_tests::harness::reply_status;
use kite_tests::http_client;
use kite_tests::Daemon;
use serde_json::json;

use crate::helper::socket::{assert_alive, exchange, ping_fast, PING_LIMIT};
use crate::helper::{exchange_calls, login_state, login_urls, sim};

/// `/auth/callback?...` as Kite would redirect, with these values (URL-encoded here).
fn callback_path(request_token: &str, state: &str) -> String {
    format!(
        "/auth/callback?{}",
        http_client::encode_form(&[
            ("action", "login"),
            ("type", "login"),
            ("status", "success"),
            ("request_token", request_token),
            ("state", state),
        ])
    )
}

#[test]
fn http_oversized_headers_and_bodies_are_refused_before_kite() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let host = daemon.http_addr().to_string();
    let state = login_state(&login_urls(&daemon).0);
    let callback = callback_path(&sim.issue_request_token(), &state);

    // Headers just under the limit are fine; over it, 431.
    let ok = daemon.raw_http(
        format!(
            "GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(8 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(reply_status(&ok), 200, "{ok}");
    for pad in [20 * 1024, 200 * 1024] {
        let reply = daemon.raw_http(
            format!(
                "GET {callback} HTTP/1.1\r\nHost: {host}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
                "a".repeat(pad)
            )
            .as_bytes(),
        );
        assert_eq!(reply_status(&reply), 431, "{pad} B of headers: {reply}");
    }
    // Many small headers add up too.
    let many: String = (0..2000).map(|i| format!("X-H{i}: value\r\n")).collect();
    let reply = daemon.raw_http(
        format!("GET {callback} HTTP/1.1\r\nHost: {host}\r\n{many}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(reply_status(&reply), 431, "{reply}");

    // Bodies over 64 KiB: 413, declared or chunked.
    let big = format!(
        "{{\"request_token\":\"{}\",\"pad\":\"{}\"}}",
        sim.issue_request_token(),
        "p".repeat(100 * 1024)
    );
    let declared = daemon.http(
        "POST",
        "/api/token/generate-access-token",
        &[("Content-Type", "application/json")],
        big.as_bytes(),
    );
    assert_eq!(declared.status, 413, "{}", declared.text());
    let mut chunked = format!(
        "POST /api/token/generate-access-token HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in big.as_bytes().chunks(8192) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = daemon.raw_http(&chunked);
    assert_eq!(reply_status(&reply), 413, "{reply}");
    // Without Content-Type: application/json, 415.
    let plain = daemon.http(
        "POST",
        "/api/token/generate-access-token",
        &[("Content-Type", "text/plain")],
        format!("{{\"request_token\":\"{}\"}}", sim.issue_request_token()).as_bytes(),
    );
    assert_eq!(plain.status, 415, "{}", plain.text());

    assert_eq!(exchange_calls(&sim), 0, "{:?}", sim.calls());
    // The state survived all that: the genuine callback still works.
    let (status, _, page) = daemon.http_get(&callback);
    assert_eq!(status, 200, "{page}");
    assert_alive(&mut daemon, pid);
}

#[test]
fn http_slowloris_is_cut_off_while_others_are_served() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let addr = daemon.http_addr();
    let head = format!("GET /api/token/status HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    // Six that trickle header bytes, two that never send a byte, two idle after one request.
    let mut slow: Vec<(TcpStream, bool, Option<Duration>)> = (0..10)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).unwrap();
            let trickles = i < 6;
            if trickles {
                stream.write_all(head.as_bytes()).unwrap();
            } else if i >= 8 {
                stream
                    .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                    .unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reply = [0u8; 4096];
                let n = stream.read(&mut reply).unwrap();
                assert!(
                    reply[..n].starts_with(b"HTTP/1.1 200"),
                    "keep-alive request"
                );
            }
            stream.set_nonblocking(true).unwrap();
            (stream, trickles, None)
        })
        .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(16);
    while slow.iter().any(|(_, _, closed)| closed.is_none()) {
        assert!(
            Instant::now() < deadline,
            "slow clients still connected after {:?}",
            started.elapsed()
        );
        for (stream, trickles, closed) in slow.iter_mut().filter(|(_, _, c)| c.is_none()) {
            // One more header byte per round, never the end of the headers.
            let wrote = if *trickles {
                stream.write(b"a").map(|_| ())
            } else {
                Ok(())
            };
            let mut buf = [0u8; 1024];
            let gone = match stream.read(&mut buf) {
                Ok(_) => true, // EOF, or an error status before closing
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => wrote.is_err(),
                Err(_) => true,
            };
            if gone {
                *closed = Some(started.elapsed());
            }
        }
        // Everyone else is served meanwhile.
        let start = Instant::now();
        let reply = http_client::request_with_timeout(
            "GET",
            &format!("{}/healthz", daemon.base_url()),
            &[],
            b"",
            PING_LIMIT,
        )
        .expect("healthz while slow clients hang on");
        assert_eq!(reply.status, 200);
        assert!(start.elapsed() < PING_LIMIT);
        ping_fast(&daemon);
        thread::sleep(Duration::from_millis(250));
    }
    for (_, _, closed) in &slow {
        let closed = closed.unwrap();
        assert!(
            closed <= Duration::from_secs(13),
            "a slowloris connection lived {closed:?}"
        );
    }
    assert_alive(&mut daemon, pid);
}

#[test]
fn http_bad_host_is_refused_before_anything_happens() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let port = daemon.http_addr().port();
    let state = login_state(&login_urls(&daemon).0);
    let callback = callback_path(&sim.issue_request_token(), &state);
    let bad_hosts = [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        "localhost".into(),
        "127.0.0.1".into(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("127.0.0.1.evil.example:{port}"),
        format!("[::1]:{port}"),
        format!("LOCALHOST:{port}.evil.example"),
    ];
    for host in &bad_hosts {
        for (method, path) in [
            ("GET", "/api/token/status"),
            ("GET", "/api/token/refresh-info"),
            ("GET", "/"),
            ("GET", callback.as_str()),
            ("POST", "/api/token/generate-access-token"),
        ] {
            let body = format!("{{\"request_token\":\"{}\"}}", sim.issue_request_token());
            let reply = daemon.http(
                method,
                path,
                &[("Host", host), ("Content-Type", "application/json")],
                if method == "POST" {
                    body.as_bytes()
                } else {
                    b""
                },
            );
            assert!(
                (400..500).contains(&reply.status),
                "Host {host:?} {method} {path}: {} {}",
                reply.status,
                reply.text()
            );
            let text = reply.text();
            for leak in ["login_url", "user_id", "Logged in"] {
                assert!(!text.contains(leak), "Host {host:?} {path}: {text}");
            }
        }
    }
    // No Host at all (HTTP/1.0 allows that).
    let reply = daemon.raw_http(b"GET /api/token/status HTTP/1.0\r\n\r\n");
    assert!((400..500).contains(&reply_status(&reply)), "{reply}");
    assert_eq!(exchange_calls(&sim), 0, "{:?}", sim.calls());
    // The state was not used up by the refused requests.
    let (status, _, page) = daemon.http_get(&callback);
    assert_eq!(status, 200, "{page}");
    assert_alive(&mut daemon, pid);
}

#[test]
fn http_forged_replayed_and_foreign_callbacks_never_reach_kite() {
    let sim = sim();
    let mut a = Daemon::start(&sim);
    let b = Daemon::builder(&sim).keep_redirect().start();
    let pid_a = a.pid();

    // Forged: states never issued, or none at all.
    for state in ["0123456789abcdef0123456789abcdef", "", "x"] {
        let (status, _, page) = a.http_get(&callback_path(&sim.issue_request_token(), state));
        assert_eq!(status, 400, "forged state {state:?}: {page}");
    }
    let (status, _, page) = a.http_get(&format!(
        "/auth/callback?status=success&request_token={}",
        sim.issue_request_token()
    ));
    assert_eq!(status, 400, "no state: {page}");
    assert_eq!(exchange_calls(&sim), 0, "{:?}", sim.calls());

    // A state from another kited (B issued it; A never did), and A's state delivered to B.
    let state_b = login_state(&login_urls(&b).0);
    let (status, _, page) = a.http_get(&callback_path(&sim.issue_request_token(), &state_b));
    assert_eq!(status, 400, "B's state at A: {page}");
    let state_a = login_state(&login_urls(&a).0);
    let (status, _, page) = b.http_get(&callback_path(&sim.issue_request_token(), &state_a));
    assert_eq!(status, 400, "A's state at B: {page}");
    assert!(
        page.contains("not issued by this kited") || page.contains("stale"),
        "{page}"
    );
    assert_eq!(exchange_calls(&sim), 0, "{:?}", sim.calls());

    // Replay: the genuine browser login works once...
    let url = login_urls(&a).0;
    let redirect = http_client::get(&url).unwrap();
    assert_eq!(redirect.status, 302);
    let location = redirect.header("location").unwrap().to_string();
    let path = {
        let u = url::Url::parse(&location).unwrap();
        format!("{}?{}", u.path(), u.query().unwrap())
    };
    let (status, _, page) = a.http_get(&path);
    assert_eq!(status, 200, "{page}");
    assert_eq!(exchange_calls(&sim), 1);
    // ...and neither the same URL again nor its state with a fresh request token gets further.
    let (status, _, page) = a.http_get(&path);
    assert_eq!(status, 400, "replayed callback: {page}");
    let (status, _, page) = a.http_get(&callback_path(
        &sim.issue_request_token(),
        &login_state(&url),
    ));
    assert_eq!(status, 400, "replayed state: {page}");
    assert_eq!(exchange_calls(&sim), 1, "{:?}", sim.calls());
    // A's own fresh state still works (B's refusal did not spoil it).
    let (status, _, page) = a.http_get(&callback_path(&sim.issue_request_token(), &state_a));
    assert_eq!(status, 200, "{page}");
    assert_alive(&mut a, pid_a);
}

#[test]
fn http_injection_in_the_callback_is_escaped_and_refused_before_kite() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let payloads = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "abc</p><script>alert(1)</script>",
        "abc&state=other",
    ];
    for payload in payloads {
        let state = login_state(&login_urls(&daemon).0);
        let (status, headers, page) = daemon.http_get(&callback_path(payload, &state));
        assert_eq!(status, 400, "{payload}: {page}");
        assert!(
            headers
                .get("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{headers:?}"
        );
        for raw in ["<script>alert", "<img src=x", "onerror=alert(1)>"] {
            assert!(
                !page.contains(raw),
                "{payload}: the page carries {raw:?} unescaped:\n{page}"
            );
        }
        // The same in `status`, which the failure page may quote.
        let path = format!(
            "/auth/callback?{}",
            http_client::encode_form(&[
                ("status", payload),
                ("request_token", &sim.issue_request_token()),
                ("state", &login_state(&login_urls(&daemon).0)),
            ])
        );
        let (status, _, page) = daemon.http_get(&path);
        assert!((400..500).contains(&status), "{payload}: {page}");
        for raw in ["<script>alert", "<img src=x", "onerror=alert(1)>"] {
            assert!(
                !page.contains(raw),
                "status {payload}: {raw:?} unescaped:\n{page}"
            );
        }
        // And through the JSON API and the socket.
        let (status, _, body) = daemon.http_post_json(
            "/api/token/generate-access-token",
            &json!({ "request_token": payload }),
        );
        assert!((400..500).contains(&status), "{payload}: {body}");
        let answer = exchange(&daemon, payload);
        assert_eq!(answer["error"]["kind"], json!("bad_request"), "{answer}");
    }
    assert_eq!(exchange_calls(&sim), 0, "{:?}", sim.calls());
    assert_alive(&mut daemon, pid);
}

// Secrets
