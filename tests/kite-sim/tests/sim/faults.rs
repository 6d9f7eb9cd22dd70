//! Injected faults: Kite's error types, hangs, wrong content types and truncated replies; the login page untouched.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use kite_sim::Fault;
use serde_json::Value;

use crate::http_client::{self};
use crate::*;

#[test]
fn faults_do_not_touch_the_login_page() {
    let sim = redirecting_sim();
    sim.fail_next(1, 500);
    let location = login(&sim, None);
    assert_eq!(param(&location, "status").as_deref(), Some("success"));
    // The fault is still queued for the next API call.
    let token = param(&location, "request_token").unwrap();
    assert_eq!(exchange(&sim, &token).status, 500);
    assert_eq!(exchange(&sim, &token).status, 200);
}

#[test]
fn hang_never_answers_and_does_not_block_others_or_shutdown() {
    let sim = redirecting_sim();
    sim.set_fault(1, Fault::Hang);
    let started = Instant::now();
    let url = format!("{}/user/profile", sim.url());
    let err = http_client::request_with_timeout("GET", &url, &[], b"", Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.calls()[0].status, None);

    // Others are still served while one request hangs; a hung request in flight does not
    // keep the simulator from stopping.
    sim.set_fault(1, Fault::Hang);
    let (tx, rx) = mpsc::channel();
    let hung_url = url.clone();
    std::thread::spawn(move || {
        let result =
            http_client::request_with_timeout("GET", &hung_url, &[], b"", Duration::from_secs(30));
        let _ = tx.send(result.map(|r| r.status));
    });
    eventually(Duration::from_secs(5), "the hung call to arrive", || {
        sim.calls().len() == 2
    });
    assert_eq!(
        http_client::request("GET", &url, &[], b"").unwrap().status,
        403
    );
    let addr = sim.addr();
    let dropped = Instant::now();
    drop(sim);
    let outcome = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the hung client was not released when the sim stopped");
    assert!(outcome.is_err(), "a hung call got an answer: {outcome:?}");
    assert!(dropped.elapsed() < Duration::from_secs(10));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
}

#[test]
fn non_json_wrong_content_type_and_truncated_faults() {
    let sim = redirecting_sim();
    let token = sim.issue_request_token();

    sim.set_fault(1, Fault::NonJson);
    let reply = exchange(&sim, &token);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type().as_deref(), Some("text/html"));
    assert!(serde_json::from_slice::<Value>(&reply.body).is_err());

    sim.set_fault(1, Fault::Truncated);
    let err = http_client::request(
        "POST",
        &format!("{}/session/token", sim.url()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        http_client::encode_form(&[
            ("api_key", &sim.api_key()),
            ("request_token", &token),
            ("checksum", &checksum(&sim, &token)),
        ])
        .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");

    // Wrong content type: the real answer (the token is consumed), labelled text/plain.
    sim.set_fault(1, Fault::WrongContentType);
    let reply = exchange(&sim, &token);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.media_type().as_deref(), Some("text/plain"));
    assert_eq!(reply.json()["status"], "success");
    assert_eq!(sim.valid_access_tokens().len(), 1);
    assert_eq!(exchange(&sim, &token).status, 403);
}

#[test]
fn truncated_reply_sends_a_partial_body() {
    let sim = redirecting_sim();
    sim.set_fault(1, Fault::Truncated);
    let raw = http_client::raw(
        sim.addr(),
        format!(
            "GET /user/profile HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            sim.addr()
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a head arrived");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length");
    assert!(!body.is_empty() && body.len() < announced, "{text}");
}
