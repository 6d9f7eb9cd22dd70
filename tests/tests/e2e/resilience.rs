//! kited survives whatever its inputs and Kite do: crash safety under `kill -9`, Kite
//! faults, hostile socket clients, hostile HTTP clients, secrets that must never leak, and a
//! crowd of waiting `kitectl get-token --wait` processes.
//!
//! Every loop is bounded and every wait is a poll with a deadline. Processes started here are
//! killed by guards when a test fails, so nothing is left behind.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kite_tests::harness::{eventually, follow_browser_login, reply_status};
use kite_tests::http_client;
use kite_tests::{Daemon, Fault};
use rand::Rng;
use serde_json::{json, Value};

use crate::helper::{
    exchange_calls, login_headless, login_state, login_urls, new_tokens, read_outputs,
    served_token, sim, the_new_token, toml_string,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How fast kited must answer a `ping` while something else misbehaves.
const PING_LIMIT: Duration = Duration::from_secs(1);

/// A connection with read and write timeouts, for clients that may never be answered.
fn connect(socket: &Path, timeout: Duration) -> UnixStream {
    let stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream
}

/// Reads one line; `None` when the daemon closed the connection first.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(line),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("no answer from kited: {e} (partial: {line:?})"),
    }
}

/// Sends `request` on a new connection and returns the answer, with `timeout` for each step.
fn ask(socket: &Path, request: &Value, timeout: Duration) -> Value {
    let stream = connect(socket, timeout);
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .expect("cannot write a request");
    let line = read_line(&mut BufReader::new(&stream))
        .unwrap_or_else(|| panic!("kited closed the connection instead of answering {request}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {line:?}"))
}

/// A `ping` on a fresh connection that must succeed within [`PING_LIMIT`]; returns its time.
fn ping_fast(daemon: &Daemon) -> Duration {
    let start = Instant::now();
    let answer = ask(
        daemon.socket_path(),
        &json!({"op": "ping"}),
        PING_LIMIT + Duration::from_secs(1),
    );
    let took = start.elapsed();
    assert_eq!(answer["ok"], json!(true), "ping: {answer}");
    assert!(
        took < PING_LIMIT,
        "ping took {took:?} (limit {PING_LIMIT:?}); log:\n{}",
        daemon.log()
    );
    took
}

fn exchange(daemon: &Daemon, request_token: &str) -> Value {
    daemon.request(&json!({"op": "exchange", "request_token": request_token}))
}

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

fn assert_alive(daemon: &mut Daemon, pid: u32) {
    assert!(daemon.is_running(), "kited died; log:\n{}", daemon.log());
    assert_eq!(daemon.pid(), pid, "kited was restarted");
    ping_fast(daemon);
}

/// Kills (SIGKILL) and reaps every child still running when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Crash safety
// ---------------------------------------------------------------------------------------------

/// Sends an `exchange` on its own connection now, and reads its answer on another thread.
/// The answer is `None` when kited died before answering.
fn exchange_in_background(socket: &Path, request_token: &str) -> thread::JoinHandle<Option<Value>> {
    let stream = connect(socket, Duration::from_secs(15));
    let request = json!({"op": "exchange", "request_token": request_token});
    let sent = (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .is_ok();
    thread::spawn(move || {
        if !sent {
            return None;
        }
        let mut line = String::new();
        match BufReader::new(&stream).read_line(&mut line) {
            Ok(n) if n > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        }
    })
}

#[test]
fn acknowledged_tokens_survive_kill_9_at_random_moments() {
    const ROUNDS: usize = 60;
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let mut rng = rand::rng();
    let mut outcomes = [0usize; 3]; // second exchange: acked, stored unacked, lost unacked
    let started = Instant::now();
    for round in 0..ROUNDS {
        let before = sim.valid_access_tokens();
        let answer = exchange(&daemon, &sim.issue_request_token());
        assert_eq!(
            answer["ok"],
            json!(true),
            "round {round}: exchange: {answer}; log:\n{}",
            daemon.log()
        );
        let mut acked = the_new_token(&sim, &before);
        let mut unacked: Vec<String> = Vec::new();
        match round % 3 {
            // Killed right after the acknowledgement.
            0 => daemon.kill9(),
            // Killed a random moment later (usually while idle).
            1 => {
                thread::sleep(Duration::from_micros(rng.random_range(0..3000)));
                daemon.kill9();
            }
            // Killed at a random moment while a second exchange is in flight.
            _ => {
                let before_second = sim.valid_access_tokens();
                let second =
                    exchange_in_background(daemon.socket_path(), &sim.issue_request_token());
                thread::sleep(Duration::from_micros(rng.random_range(0..4000)));
                daemon.kill9();
                let second_answer = second.join().expect("exchange thread");
                let minted = new_tokens(&sim, &before_second);
                match second_answer {
                    Some(a) if a["ok"] == json!(true) => {
                        assert_eq!(minted.len(), 1, "round {round}: {minted:?}");
                        acked = minted[0].clone();
                        outcomes[0] += 1;
                    }
                    _ => unacked = minted,
                }
            }
        }
        daemon.restart();
        let served = served_token(&daemon).unwrap_or_else(|| {
            panic!(
                "round {round}: no token after restart (acknowledged {acked}); log:\n{}",
                daemon.log()
            )
        });
        if served != acked {
            // Only a token exchanged after the last acknowledgement may have replaced it.
            assert!(
                unacked.contains(&served),
                "round {round}: after kill -9 kited serves {served}, but the acknowledged token \
                 was {acked} (unacknowledged: {unacked:?}); log:\n{}",
                daemon.log()
            );
            outcomes[1] += 1;
        } else if !unacked.is_empty() {
            outcomes[2] += 1;
        }
        let status = daemon.request(&json!({"op": "status"}));
        assert_eq!(
            status["status"]["state"],
            json!("valid"),
            "round {round}: {status}"
        );
    }
    eprintln!(
        "{ROUNDS} kill -9 rounds in {:?}; second exchange acked {} times, stored but unacked {}, \
         lost unacked {}",
        started.elapsed(),
        outcomes[0],
        outcomes[1],
        outcomes[2]
    );
}

// ---------------------------------------------------------------------------------------------
// Kite faults
// ---------------------------------------------------------------------------------------------

#[test]
fn kite_faults_give_clear_errors_store_nothing_and_never_retry_an_exchange() {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim)
        .config_toml("[kite]\ntimeout = \"2s\"\n[notify]\ndesktop = false\n")
        .start();
    let pid = daemon.pid();
    let mut current = login_headless(&daemon);

    let faults = [
        ("503", Fault::Status(503)),
        ("429 with Retry-After", Fault::Status(429)),
        ("500", Fault::Status(500)),
        ("non-JSON body", Fault::NonJson),
        ("truncated body", Fault::Truncated),
        ("hang", Fault::Hang),
        ("wrong content type", Fault::WrongContentType),
    ];
    for (name, fault) in faults {
        sim.clear_calls();
        sim.set_fault(1, fault);
        let before = sim.valid_access_tokens();
        let request_token = sim.issue_request_token();
        let started = Instant::now();
        let call = exchange_in_background(daemon.socket_path(), &request_token);
        // While the faulty call is in flight, other clients are served at once.
        let mut served_meanwhile = 0;
        let deadline = Instant::now() + Duration::from_secs(12);
        while !call.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{name}: the exchange never ended"
            );
            ping_fast(&daemon);
            let start = Instant::now();
            assert_eq!(served_token(&daemon), Some(current.clone()), "{name}");
            assert!(
                start.elapsed() < PING_LIMIT,
                "{name}: get_token took {:?}",
                start.elapsed()
            );
            served_meanwhile += 1;
            thread::sleep(Duration::from_millis(50));
        }
        let took = started.elapsed();
        let answer = call
            .join()
            .expect("exchange thread")
            .unwrap_or_else(|| panic!("{name}: no answer to the exchange; log:\n{}", daemon.log()));
        // Give a (wrong) background retry the chance to show up in the call log.
        thread::sleep(Duration::from_millis(300));
        let calls = sim.calls_to("POST", "/session/token");
        assert_eq!(
            calls.len(),
            1,
            "{name}: one attempt must make exactly one POST /session/token (a request token is \
             single use): {calls:?}"
        );
        assert_eq!(
            calls[0].form_param("request_token").as_deref(),
            Some(request_token.as_str()),
            "{name}"
        );

        eprintln!("{name}: {answer} after {took:?}, {served_meanwhile} pings meanwhile");
        if fault == Fault::WrongContentType {
            // The body is Kite's genuine answer (the request token is used up and the session
            // exists at Kite); only the label is wrong. Refusing it would throw away a real
            // login, so kited may accept it — but then it must store exactly that session.
            if answer["ok"] == json!(true) {
                let minted = the_new_token(&sim, &before);
                assert_eq!(served_token(&daemon), Some(minted.clone()), "{name}");
                current = minted;
            } else {
                assert_eq!(served_token(&daemon), Some(current.clone()), "{name}");
            }
            continue;
        }

        assert_eq!(answer["ok"], json!(false), "{name}: {answer}");
        let kind = answer["error"]["kind"].as_str().unwrap_or("");
        let expected = match fault {
            Fault::Hang => "kite_timeout",
            _ => "kite_unavailable",
        };
        assert!(
            kind == expected || kind == "kite",
            "{name}: error kind {kind:?}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.len() > 15 && message.contains("Kite"),
            "{name}: the message should say what Kite did: {answer}"
        );
        for junk in [
            "Error {",
            "reqwest",
            "hyper::",
            "panicked",
            &sim.api_secret(),
        ] {
            assert!(
                !message.contains(junk),
                "{name}: message has {junk:?}: {message}"
            );
        }
        if let Fault::Status(code) = fault {
            assert!(message.contains(&code.to_string()), "{name}: {message}");
        }
        if fault == Fault::Hang {
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
                "{name}: kite.timeout is 2s, the exchange took {took:?}"
            );
            assert!(
                served_meanwhile >= 5,
                "{name}: only {served_meanwhile} pings meanwhile"
            );
            assert!(message.contains("did not answer"), "{name}: {message}");
        }
        // Nothing stored: the previous token is still served and still valid.
        assert_eq!(served_token(&daemon), Some(current.clone()), "{name}");
        let status = daemon.request(&json!({"op": "status"}));
        assert_eq!(
            status["status"]["state"],
            json!("valid"),
            "{name}: {status}"
        );
        assert!(new_tokens(&sim, &before).is_empty(), "{name}");
    }
    // Kite works again: the next login goes through.
    let fresh = login_headless(&daemon);
    assert_eq!(served_token(&daemon), Some(fresh));
    assert_alive(&mut daemon, pid);
}

// ---------------------------------------------------------------------------------------------
// Hostile socket clients
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Hostile HTTP clients
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_under(&path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}

#[test]
fn secrets_appear_nowhere_kited_writes() {
    let sim = sim();
    let secret = sim.api_secret();
    let extra = tempfile::tempdir().unwrap();
    let hooks_dir = extra.path().join("hooks");
    let notify_dir = extra.path().join("notify");
    std::fs::create_dir_all(&hooks_dir).unwrap();
    std::fs::create_dir_all(&notify_dir).unwrap();
    let env_file = hooks_dir.join("kite.env");
    let script = format!(
        "cat >> '{0}/events.ndjson'; echo >> '{0}/events.ndjson'; env >> '{0}/env.txt'",
        notify_dir.display()
    );
    let config = format!(
        "[kite]\ntimeout = \"2s\"\n[notify]\ndesktop = false\ncommand = [\"sh\", \"-c\", {}]\n\
         [hooks]\nenv_file = {}\n",
        toml_string(&script),
        toml_string(&env_file.display().to_string())
    );
    let mut daemon = Daemon::builder(&sim).config_toml(&config).start();

    // What kited says, gathered as it is said (the token's own answers excepted).
    let mut said: Vec<(String, Vec<u8>)> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();

    let watcher = {
        let stream = connect(daemon.socket_path(), Duration::from_secs(20));
        (&stream).write_all(b"{\"op\":\"watch\"}\n").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let first = read_line(&mut reader).unwrap();
        said.push(("watch ack".into(), first.into_bytes()));
        (
            stream,
            thread::spawn(move || {
                let mut all = Vec::new();
                let _ = reader.read_to_end(&mut all);
                all
            }),
        )
    };

    // Browser login.
    let answer = daemon.request(&json!({"op": "login_url"}));
    said.push(("login_url".into(), answer.to_string().into_bytes()));
    let before = sim.valid_access_tokens();
    let (status, page) = follow_browser_login(&daemon, answer["login_url"].as_str().unwrap());
    assert_eq!(status, 200, "{page}");
    said.push(("callback page".into(), page.into_bytes()));
    tokens.push(the_new_token(&sim, &before));
    assert_eq!(served_token(&daemon).as_ref(), tokens.last());

    // Socket and kitectl.
    for op in ["status", "ping"] {
        let answer = daemon.request(&json!({ "op": op }));
        said.push((op.into(), answer.to_string().into_bytes()));
    }
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["ping"],
        &["login"],
        &["exchange", "NotARealToken0000"],
    ] {
        let out = daemon.ctl(args);
        said.push((format!("kitectl {args:?} stdout"), out.stdout));
        said.push((format!("kitectl {args:?} stderr"), out.stderr));
    }
    // Failing exchanges: Kite down, and a used request token.
    sim.fail_next(1, 503);
    let answer = exchange(&daemon, &sim.issue_request_token());
    assert_eq!(answer["ok"], json!(false));
    said.push(("exchange 503".into(), answer.to_string().into_bytes()));
    let used = sim.issue_request_token();
    let before = sim.valid_access_tokens();
    assert_eq!(exchange(&daemon, &used)["ok"], json!(true));
    tokens.push(the_new_token(&sim, &before));
    let answer = exchange(&daemon, &used);
    assert_eq!(answer["ok"], json!(false));
    said.push(("exchange reused".into(), answer.to_string().into_bytes()));

    // HTTP: every GET route, failing POSTs, and one successful generate (its answer excepted).
    for path in [
        "/",
        "/healthz",
        "/api/token/status",
        "/api/token/callback-url",
        "/api/token/refresh-info",
        "/static/kite-token-flow.js",
        "/static/app.js",
        "/auth/callback?status=success&request_token=abc&state=forged",
        "/auth/callback?status=cancelled",
        "/nope",
    ] {
        let reply = daemon.http("GET", path, &[], b"");
        said.push((format!("GET {path}"), head_and_body(&reply)));
    }
    for body in [
        json!({"request_token": used}),
        json!({"request_token": ""}),
        json!({"nope": 1}),
    ] {
        let reply = daemon.http(
            "POST",
            "/api/token/generate-access-token",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert!(reply.status >= 400, "{}", reply.text());
        said.push((format!("POST generate {body}"), head_and_body(&reply)));
    }
    let before = sim.valid_access_tokens();
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": sim.issue_request_token()}),
    );
    assert_eq!(status, 200, "{body}");
    tokens.push(the_new_token(&sim, &before));

    // Logout, then stop kited so everything it writes is written.
    let answer = daemon.request(&json!({"op": "logout"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    said.push(("logout".into(), answer.to_string().into_bytes()));
    let answer = daemon.request(&json!({"op": "status"}));
    said.push((
        "status after logout".into(),
        answer.to_string().into_bytes(),
    ));
    eventually(Duration::from_secs(5), "the notify command to run", || {
        std::fs::read_to_string(notify_dir.join("events.ndjson"))
            .is_ok_and(|t| t.contains("token_invalidated"))
    });
    daemon.terminate();
    let (stream, events) = watcher;
    drop(stream);
    said.push(("watch events".into(), events.join().unwrap()));
    said.push(("kited stdout+stderr".into(), daemon.log().into_bytes()));

    // Every file kited (or its hooks) left, except the env file, whose job is the token.
    let state_dir = daemon.state_dir().to_path_buf();
    let mut files = Vec::new();
    files_under(daemon.dir(), &mut files);
    files_under(extra.path(), &mut files);
    assert!(files.iter().any(|f| f.starts_with(&state_dir)), "{files:?}");
    let sled_dir = state_dir.join("db");
    let mut checked = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        assert!(
            !contains(&bytes, &secret),
            "the api secret is in {}",
            file.display()
        );
        if *file == env_file || file.starts_with(&sled_dir) {
            continue;
        }
        for token in &tokens {
            assert!(
                !contains(&bytes, token),
                "an access token is in {}",
                file.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "{files:?}");
    for (what, bytes) in &said {
        assert!(!contains(bytes, &secret), "the api secret is in {what}");
        for token in &tokens {
            assert!(
                !contains(bytes, token),
                "an access token is in {what}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// A reply's headers and body, as one blob to search.
fn head_and_body(reply: &http_client::HttpReply) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in &reply.headers {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.extend_from_slice(&reply.body);
    out
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

/// The sockets a process holds open, by inode.
fn sockets(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let link = std::fs::read_link(e.path()).ok()?;
                    let link = link.to_string_lossy();
                    link.starts_with("socket:").then(|| link.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_hundred_waiting_get_tokens_all_wake_with_the_same_token() {
    const CLIENTS: usize = 100;
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let baseline = sockets(pid);
    let connected = || sockets(pid).difference(&baseline).count();
    let mut children = Children(Vec::with_capacity(CLIENTS));
    for _ in 0..CLIENTS {
        let child = daemon
            .ctl_command(&["get-token", "--wait", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start kitectl");
        children.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while connected() < CLIENTS {
        if let Some((i, status)) = children
            .0
            .iter_mut()
            .enumerate()
            .find_map(|(i, c)| c.try_wait().unwrap().map(|s| (i, s)))
        {
            let mut err = String::new();
            let _ = children.0[i]
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("kitectl {i} exited {status} before any login: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {CLIENTS} kitectl are connected after 20 s",
            connected()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(children
        .0
        .iter_mut()
        .all(|c| matches!(c.try_wait(), Ok(None))));

    let before = sim.valid_access_tokens();
    let (status, page) = follow_browser_login(&daemon, &login_urls(&daemon).0);
    assert_eq!(status, 200, "{page}");
    let logged_in = Instant::now();
    let token = the_new_token(&sim, &before);

    let deadline = logged_in + Duration::from_secs(5);
    let mut outputs = Vec::with_capacity(CLIENTS);
    for child in &mut children.0 {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let (out, err) = read_outputs(child);
                outputs.push((status, out, err));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a waiting kitectl did not wake within 5 s of the login"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    eprintln!(
        "all {CLIENTS} woke within {:?} of the login",
        logged_in.elapsed()
    );
    for (status, out, err) in outputs {
        assert!(status.success(), "kitectl exited {status}: {err}");
        assert_eq!(out, format!("{token}\n"), "stderr: {err}");
    }
    assert_alive(&mut daemon, pid);
}
