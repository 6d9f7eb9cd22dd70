//! HTTP request limits a real server enforces: requests without Host, oversized heads and bodies, slow clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kite_tests::harness::reply_status;
use kite_tests::Daemon;
use serde_json::{json, Value};

use crate::helper::http::post_json_raw;
use crate::helper::{exchange_calls, get, get_json, sim, web_daemon};

/// [`assert_detail`] for a raw reply text: the status, a JSON `{"detail"}` body naming `needle`.
fn assert_raw_detail(reply: &str, status: u16, needle: &str) {
    assert_eq!(reply_status(reply), status, "{reply}");
    let (_, body) = reply.split_once("\r\n\r\n").expect("a reply head");
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "{reply}");
}

/// The Host rules themselves are unit tests of the routes; what needs a real server is a request
/// hyper parses without any Host, and a refused callback that must leave its login usable.
#[test]
fn host_header_must_name_this_server() {
    let sim = sim();
    let d = web_daemon(&sim);
    let port = d.http_addr().port();
    // No Host at all (HTTP/1.1 and HTTP/1.0).
    for request in [
        "GET /api/token/status HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /api/token/status HTTP/1.0\r\n\r\n",
    ] {
        let reply = d.raw_http(request.as_bytes());
        let status: u16 = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!(
            status == 0 || (400..500).contains(&status),
            "no Host: {reply}"
        );
        assert!(!reply.contains("\"state\""), "no Host got data: {reply}");
    }
    // A callback with a foreign Host never reaches Kite, and leaves its login usable.
    let token = sim.issue_request_token();
    let info = get_json(&d, "/api/token/refresh-info");
    let login_url = url::Url::parse(info["login_url"].as_str().unwrap()).unwrap();
    let state = login_url
        .query_pairs()
        .find(|(k, _)| k == "redirect_params")
        .map(|(_, v)| v.trim_start_matches("state=").to_string())
        .unwrap();
    let callback =
        format!("/auth/callback?action=login&status=success&state={state}&request_token={token}");
    let foreign = format!("evil.com:{port}");
    let reply = d.http("GET", &callback, &[("Host", &foreign)], b"");
    assert!((400..500).contains(&reply.status), "{}", reply.status);
    assert_eq!(exchange_calls(&sim), 0, "a foreign Host reached Kite");
    let reply = get(&d, &callback);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(exchange_calls(&sim), 1);
}

/// Sends a request as raw bytes and returns the status, or 0 when the connection was closed or
/// reset without an answer (acceptable for hostile input, as long as it is not 2xx).
fn status_of(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    reply_status(&d.raw_request(method, path, headers, body))
}

#[test]
fn oversized_headers_are_431() {
    let sim = sim();
    let d = web_daemon(&sim);
    let token = sim.issue_request_token();
    let body = json!({ "request_token": token }).to_string();
    let big = "a".repeat(17 * 1024);
    let reply = d.raw_request(
        "POST",
        "/api/token/generate-access-token",
        &[("Content-Type", "application/json"), ("X-Padding", &big)],
        body.as_bytes(),
    );
    assert_eq!(reply_status(&reply), 431, "{reply}");
    // Many small headers adding up past 16 KiB too.
    let names: Vec<String> = (0..40).map(|i| format!("X-Pad-{i}")).collect();
    let value = "b".repeat(500);
    let mut headers: Vec<(&str, &str)> =
        names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    headers.push(("Content-Type", "application/json"));
    let status = status_of(
        &d,
        "POST",
        "/api/token/generate-access-token",
        &headers,
        body.as_bytes(),
    );
    assert!(status == 431, "many headers → {status}");
    assert_eq!(exchange_calls(&sim), 0, "nothing reached Kite");
    // Ordinary large headers (a few KiB of cookies) are fine.
    let cookie = "c".repeat(6 * 1024);
    let reply = d.http("GET", "/api/token/status", &[("Cookie", &cookie)], b"");
    assert_eq!(reply.status, 200);
}

#[test]
fn oversized_bodies_are_413() {
    let sim = sim();
    let d = web_daemon(&sim);
    let token = sim.issue_request_token();
    // A body that would be a valid exchange if it were read: the token, then padding.
    let padded = |size: usize| {
        let head = format!("{{\"request_token\": \"{token}\", \"pad\": \"");
        let mut body = head.into_bytes();
        body.resize(size - 2, b'x');
        body.extend_from_slice(b"\"}");
        body
    };
    // Raw bytes: kited may answer before it has read the whole body, and close.
    let big = padded(70 * 1024);
    let json = [("Content-Type", "application/json")];
    let reply = d.raw_request("POST", "/api/token/generate-access-token", &json, &big);
    assert_raw_detail(&reply, 413, "too large");

    // Chunked, no length: the server must count.
    let mut chunked = Vec::new();
    for piece in big.chunks(8 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = d.raw_request(
        "POST",
        "/api/token/generate-access-token",
        &[json[0], ("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_raw_detail(&reply, 413, "too large");
    // A length that lies (says small, sends more) is not read past the declared length.
    assert_eq!(exchange_calls(&sim), 0, "nothing reached Kite");

    // Just under the limit is read and used.
    let fits = padded(60 * 1024);
    let reply = post_json_raw(&d, "/api/token/generate-access-token", &[], &fits);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(exchange_calls(&sim), 1);
}

/// Reads until the peer closes or `limit` passes; returns what arrived, whether it closed, and
/// when.
fn read_until_closed(mut stream: &TcpStream, limit: Duration) -> (Vec<u8>, bool, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            return (got, false, started.elapsed());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (got, false, started.elapsed())
            }
            Err(_) => return (got, true, started.elapsed()),
        }
    }
}

#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let sim = sim();
    let d = web_daemon(&sim);
    let addr = d.http_addr();
    let host = format!("Host: {addr}\r\n");
    let limit = Duration::from_secs(13);

    // Three ways to hold a connection: say nothing, send half the headers, send half a body.
    let silent = TcpStream::connect(addr).unwrap();
    let mut partial_head = TcpStream::connect(addr).unwrap();
    partial_head
        .write_all(format!("GET /api/token/status HTTP/1.1\r\n{host}X-Slow: a").as_bytes())
        .unwrap();
    let mut partial_body = TcpStream::connect(addr).unwrap();
    partial_body
        .write_all(
            format!(
                "POST /api/token/generate-access-token HTTP/1.1\r\n{host}\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"request_"
            )
            .as_bytes(),
        )
        .unwrap();
    let started = Instant::now();
    let watchers: Vec<JoinHandle<(Vec<u8>, bool, Duration)>> = [silent, partial_head, partial_body]
        .into_iter()
        .map(|stream| std::thread::spawn(move || read_until_closed(&stream, limit)))
        .collect();

    // Meanwhile the server answers everyone else promptly.
    for _ in 0..5 {
        let t = Instant::now();
        let reply = get(&d, "/api/token/status");
        assert_eq!(reply.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a normal request took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let results: Vec<_> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    for (name, (got, closed, _)) in ["silent", "partial headers", "partial body"]
        .iter()
        .zip(&results)
    {
        let text = String::from_utf8_lossy(got);
        assert!(
            *closed,
            "{name}: the server kept the connection open for {limit:?} (got {text:?})"
        );
        assert!(
            !text.contains("\"state\""),
            "{name}: a partial request was answered as a whole: {text}"
        );
    }
    let (_, _, partial_head_took) = &results[1];
    assert!(
        *partial_head_took >= Duration::from_secs(5)
            && *partial_head_took <= Duration::from_millis(12_500),
        "partial headers were cut after {partial_head_took:?}, expected about 10 s"
    );
    let body_text = String::from_utf8_lossy(&results[2].0);
    assert!(
        body_text.is_empty() || body_text.starts_with("HTTP/1.1 408"),
        "partial body: {body_text}"
    );
    assert!(started.elapsed() < Duration::from_secs(14));
    assert_eq!(exchange_calls(&sim), 0);
}
