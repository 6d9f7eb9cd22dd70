//! Hostile requests: a repeated JSON key, a flood of refresh_info, a crowd of idle connections.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use kite_tests::http_client::{self};
use kite_tests::Daemon;
use serde_json::{json, Value};

use crate::helper::uid::{next_answer, PROCESS_DEADLINE};
use crate::helper::{sim, text};

#[test]
fn a_repeated_key_is_a_bad_request_and_changes_nothing() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let stream = daemon.connect_ipc();
    (&stream)
        .write_all(b"{\"op\":\"ping\",\"op\":\"shutdown\"}\n{\"op\":\"ping\"}\n")
        .unwrap();
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["ok"], json!(false), "{answer}");
    assert_eq!(answer["error"]["kind"], json!("bad_request"), "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"op\" more than once"),
        "{answer}"
    );
    // The same connection goes on, and kited is still running.
    line.clear();
    reader.read_line(&mut line).unwrap();
    let answer: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let nested = daemon.request(&json!({"op": "ping"}));
    assert_eq!(nested["ok"], json!(true));
    let again = daemon.request(&serde_json::from_str::<Value>(r#"{"op":"status"}"#).unwrap());
    assert_eq!(again["ok"], json!(true), "{again}");
}

// 12. The token store is bound to one Kite app

/// More requests than kited keeps pending login states.
const FLOOD: usize = 100;

#[test]
fn pending_logins_survive_a_flood_of_refresh_info() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let login = daemon.ctl(&["login"]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    let from_kitectl = text(&login.stdout).trim().to_string();
    let (status, _, body) = daemon.http_get("/api/token/refresh-info");
    assert_eq!(status, 200, "{body}");
    let from_page: Value = serde_json::from_str(&body).unwrap();
    let from_page = from_page["login_url"].as_str().unwrap().to_string();

    // A cross-site page hammers the route: refused, and no state is made.
    for headers in [
        &[("Origin", "https://evil.example")][..],
        &[("Sec-Fetch-Site", "cross-site")],
    ] {
        for _ in 0..FLOOD {
            let reply = daemon.http("GET", "/api/token/refresh-info", headers, b"");
            assert_eq!(reply.status, 403, "{headers:?}: {}", reply.text());
        }
    }
    let (status, page) = kite_tests::follow_browser_login(&daemon, &from_page);
    assert_eq!(status, 200, "the page's login was pushed out: {page}");

    // Any local program can still ask (no Origin): that churns only the HTTP states, never
    // the login started with kitectl.
    for _ in 0..FLOOD {
        assert_eq!(daemon.http_get("/api/token/refresh-info").0, 200);
    }
    let (status, page) = kite_tests::follow_browser_login(&daemon, &from_kitectl);
    assert_eq!(status, 200, "kitectl's login was pushed out: {page}");
}

// 7. A crowd of idle connections leaves room for real work

/// Idle connections opened to each server: more than the 1024 descriptors of a default soft
/// limit.
const CROWD: usize = 1100;

#[test]
#[cfg_attr(
    not(kited_tests_many_fds),
    ignore = "the hard open-files limit is too low for 1,100 connections"
)]
fn a_crowd_of_idle_connections_leaves_room_for_an_exchange_and_healthz() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= 4 * CROWD as u64,
        "the hard open-files limit ({hard}) is too low for the crowd"
    );
    let set_soft = |soft: u64| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                maximum: limit.maximum,
            },
        )
        .expect("setrlimit");
    };
    // kited starts with a login session's default soft limit, as under systemd.
    set_soft(1024);
    let sim = sim();
    let daemon = Daemon::start(&sim);
    set_soft(hard.min(1 << 16));

    let mut crowd = Vec::new();
    for _ in 0..CROWD {
        if let Ok(stream) =
            std::net::TcpStream::connect_timeout(&daemon.http_addr(), Duration::from_secs(3))
        {
            crowd.push(stream);
        }
    }
    let mut socket_crowd = Vec::new();
    for _ in 0..CROWD {
        if let Ok(stream) =
            kite_proto::socket_path::connect_bounded(daemon.socket_path(), Duration::from_secs(1))
        {
            socket_crowd.push(stream);
        }
    }
    // A SYN dropped in the burst may time out; the crowd must still be past the 1024 mark.
    assert!(
        crowd.len() > 1024 && socket_crowd.len() > 1024,
        "{} HTTP and {} socket connections made",
        crowd.len(),
        socket_crowd.len()
    );

    let reply = http_client::request_with_timeout(
        "GET",
        &format!("{}/healthz", daemon.base_url()),
        &[],
        b"",
        Duration::from_secs(5),
    )
    .expect("/healthz did not answer among the idle crowd");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let stream = kite_proto::socket_path::connect_bounded(daemon.socket_path(), PROCESS_DEADLINE)
        .expect("no room on the socket");
    stream.set_read_timeout(Some(PROCESS_DEADLINE)).unwrap();
    let request = json!({"op": "exchange", "request_token": sim.issue_request_token()});
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .unwrap();
    let answer = next_answer(&mut BufReader::new(&stream)).expect("no answer to the exchange");
    assert_eq!(answer["ok"], json!(true), "{answer}");
    drop(crowd);
    drop(socket_crowd);
    let failures = daemon
        .log()
        .lines()
        .filter(|l| l.contains("accept failed") || l.contains("too many connections"))
        .count();
    assert!(
        failures <= 2,
        "the log filled with refusals:\n{}",
        daemon.log()
    );
}

// 6. The env file: no planted file is opened, and a failed rewrite is reported
