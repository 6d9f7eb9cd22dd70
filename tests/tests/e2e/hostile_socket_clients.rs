//! Hostile socket clients: huge lines, invalid UTF-8, idle crowds, vanishing clients and floods.

use std::io::{BufReader, Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use kite_tests::harness::eventually;
use kite_tests::Daemon;
use serde_json::{json, Value};

use crate::helper::socket::{assert_alive, connect, ping_fast, read_line, PING_LIMIT};
use crate::helper::{exchange_calls, login_headless, served_token, sim};

/// A `/proc/PID/status` field in kB (VmRSS, VmHWM) or a count (Threads).
fn proc_status(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
}

/// Open descriptors of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn ipc_megabyte_line_without_newline_is_refused_and_memory_stays_bounded() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    for round in 0..3 {
        let stream = connect(daemon.socket_path(), Duration::from_secs(5));
        // Written from another thread: kited may stop reading (or close) after the cap.
        let writer = {
            let stream = stream.try_clone().unwrap();
            thread::spawn(move || {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..16 {
                    if (&stream).write_all(&chunk).is_err() {
                        break;
                    }
                }
            })
        };
        let mut reader = BufReader::new(&stream);
        let line = read_line(&mut reader)
            .unwrap_or_else(|| panic!("round {round}: kited closed without a bad_request answer"));
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["ok"], json!(false), "{answer}");
        assert_eq!(answer["error"]["kind"], json!("bad_request"), "{answer}");
        writer.join().unwrap();
        // The connection may close now; if it stays open it must still work.
        if (&stream).write_all(b"\n{\"op\":\"ping\"}\n").is_ok() {
            if let Some(line) = read_line(&mut reader) {
                let answer: Value = serde_json::from_str(&line).unwrap();
                assert_eq!(answer["ok"], json!(true), "after the long line: {answer}");
            }
        }
        ping_fast(&daemon);
    }
    let hwm = proc_status(pid, "VmHWM");
    assert!(hwm < 64 * 1024, "kited's peak RSS is {hwm} kB");
    assert_alive(&mut daemon, pid);
}

#[test]
fn ipc_invalid_utf8_is_never_ok_and_never_reaches_kite() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let cases: [&[u8]; 9] = [
        b"\xff\xfe\xfd\n",
        // Valid JSON once the bad bytes are replaced: only strict decoding refuses these.
        b"{\"op\":\"ping\",\"pad\":\"\xff\"}\n",
        b"{\"op\":\"status\",\"pad\":\"\xed\xa0\x80\"}\n",
        b"{\"op\":\"ping\xff\"}\n",
        b"{\"op\":\"get_token\"}\xc3\n",
        b"{\"op\":\"\xc0\xafping\"}\n",
        b"\xef\xbb\xbf{\"op\":\"ping\"}\n",
        b"{\0\"\0o\0p\0\"\0:\0\"\0p\0i\0n\0g\0\"\0}\0\n",
        b"{\"op\":\"exchange\",\"request_token\":\"abc\xffdef\"}\n",
    ];
    for case in cases {
        let stream = connect(daemon.socket_path(), Duration::from_secs(5));
        (&stream).write_all(case).unwrap();
        let mut reader = BufReader::new(&stream);
        if let Some(line) = read_line(&mut reader) {
            let answer: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{case:?}: answer is not JSON ({e}): {line:?}"));
            assert_eq!(
                answer["ok"],
                json!(false),
                "{case:?} was accepted: {answer}"
            );
            assert_eq!(answer["error"]["kind"], json!("bad_request"), "{answer}");
            // Still usable after the error, or closed.
            if (&stream).write_all(b"{\"op\":\"ping\"}\n").is_ok() {
                if let Some(line) = read_line(&mut reader) {
                    let answer: Value = serde_json::from_str(&line).unwrap();
                    assert_eq!(answer["ok"], json!(true), "{answer}");
                }
            }
        }
    }
    assert_eq!(exchange_calls(&sim), 0, "{:?}", sim.calls());
    assert_alive(&mut daemon, pid);
}

#[test]
fn ipc_500_idle_connections_do_not_keep_others_waiting() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let token = login_headless(&daemon);
    let mut idle = Vec::with_capacity(500);
    for i in 0..500 {
        let stream = connect(daemon.socket_path(), Duration::from_secs(5));
        // Every fifth one has sent half a request and stalls.
        if i % 5 == 0 {
            (&stream).write_all(b"{\"op\":\"get_to").unwrap();
        }
        idle.push(stream);
    }
    eventually(
        Duration::from_secs(10),
        "kited to accept 500 connections",
        || fd_count(pid) >= 500,
    );
    for _ in 0..5 {
        ping_fast(&daemon);
        let start = Instant::now();
        assert_eq!(served_token(&daemon), Some(token.clone()));
        assert!(start.elapsed() < PING_LIMIT);
    }
    // The idle ones are still served when they finally speak.
    for i in [1, 251, 499] {
        let mut stream = &idle[i];
        stream.write_all(b"{\"op\":\"ping\"}\n").unwrap();
        let answer: Value =
            serde_json::from_str(&read_line(&mut BufReader::new(stream)).unwrap()).unwrap();
        assert_eq!(answer["ok"], json!(true), "{answer}");
    }
    drop(idle);
    eventually(
        Duration::from_secs(5),
        "kited to close the idle connections",
        || fd_count(pid) < 100,
    );
    assert_alive(&mut daemon, pid);
}

#[test]
fn ipc_clients_that_vanish_mid_request_do_not_hurt() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    // No token yet, so the abandoned `get_token` waits below really wait.
    let baseline = fd_count(pid);
    let socket = daemon.socket_path().to_path_buf();
    for i in 0..200 {
        let stream = connect(&socket, Duration::from_secs(5));
        match i % 5 {
            // Half a line, then gone.
            0 => {
                let _ = (&stream).write_all(b"{\"op\":\"get_tok");
            }
            // A whole request, gone before the answer is written.
            1 => {
                let _ = (&stream).write_all(b"{\"op\":\"get_token\"}\n{\"op\":\"status\"}\n");
            }
            // Half a line and a half-close: kited must see the end and hang up.
            2 => {
                let _ = (&stream).write_all(b"{\"op\":\"ping\"");
                stream.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                let _ = (&stream).read_to_end(&mut rest);
                assert!(rest.is_empty(), "answered half a line: {rest:?}");
            }
            // A watcher that leaves.
            3 => {
                let _ = (&stream).write_all(b"{\"op\":\"watch\"}\n");
            }
            // A long get_token wait, abandoned (like a Ctrl-C'd `kitectl get-token --wait`).
            _ => {
                let _ = (&stream).write_all(b"{\"op\":\"get_token\",\"wait_secs\":600}\n");
            }
        }
        drop(stream);
    }
    ping_fast(&daemon);
    // Every vanished client's connection is released (no descriptor leak), the abandoned
    // waits included: a script that kills `kitectl get-token --wait 3600` every few seconds
    // before the morning login must not use up kited's connection slots.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count(pid) > baseline + 5 {
        assert!(
            Instant::now() < deadline,
            "kited still holds {} more descriptors than before the clients came and went",
            fd_count(pid) - baseline
        );
        thread::sleep(Duration::from_millis(20));
    }
    let token = login_headless(&daemon);
    assert_eq!(served_token(&daemon), Some(token));
    assert_alive(&mut daemon, pid);
}

#[test]
fn ipc_flood_of_10000_requests_is_all_answered_with_bounded_memory() {
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 2500;
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let token = login_headless(&daemon);
    let socket = daemon.socket_path().to_path_buf();
    let flooders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let socket = socket.clone();
            let token = token.clone();
            thread::spawn(move || {
                let stream = connect(&socket, Duration::from_secs(20));
                let writer = {
                    let stream = stream.try_clone().unwrap();
                    thread::spawn(move || {
                        let mut batch = Vec::new();
                        for i in 0..PER_CONNECTION {
                            batch.extend_from_slice(match i % 3 {
                                0 => b"{\"op\":\"get_token\"}\n".as_slice(),
                                1 => b"{\"op\":\"ping\"}\n",
                                _ => b"{\"op\":\"status\"}\n",
                            });
                        }
                        (&stream).write_all(&batch).expect("flood write");
                    })
                };
                let mut reader = BufReader::new(&stream);
                for i in 0..PER_CONNECTION {
                    let line = read_line(&mut reader).expect("kited hung up mid-flood");
                    let answer: Value = serde_json::from_str(&line).unwrap();
                    assert_eq!(answer["ok"], json!(true), "answer {i}: {answer}");
                    if i % 3 == 0 {
                        assert_eq!(answer["access_token"], json!(token));
                    }
                }
                writer.join().unwrap();
            })
        })
        .collect();
    // A client that floods and never reads: kited must push back, not buffer without end.
    let hog = {
        let stream = connect(&socket, Duration::from_secs(2));
        thread::spawn(move || {
            let line = b"{\"op\":\"status\"}\n";
            for _ in 0..10_000 {
                if (&stream).write_all(line).is_err() {
                    break;
                }
            }
            stream
        })
    };
    let started = Instant::now();
    while flooders.iter().any(|f| !f.is_finished()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the flood was not answered in 30 s"
        );
        ping_fast(&daemon);
        thread::sleep(Duration::from_millis(100));
    }
    for f in flooders {
        f.join().expect("a flooding client failed");
    }
    let hog = hog.join().unwrap();
    ping_fast(&daemon);
    let hwm = proc_status(pid, "VmHWM");
    assert!(
        hwm < 64 * 1024,
        "kited's peak RSS reached {hwm} kB under the flood"
    );
    drop(hog);
    assert_alive(&mut daemon, pid);
}

// Hostile HTTP clients
