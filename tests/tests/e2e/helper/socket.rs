//! Talking to kited's Unix socket by hand, and watching the daemon process: connect, ask, read a line, ping, exchange, its fds and memory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use kite_tests::Daemon;
use serde_json::{json, Value};

/// How fast kited must answer a `ping` while something else misbehaves.
pub const PING_LIMIT: Duration = Duration::from_secs(1);

/// A connection with read and write timeouts, for clients that may never be answered.
pub fn connect(socket: &Path, timeout: Duration) -> UnixStream {
    let stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream
}

/// Reads one line; `None` when the daemon closed the connection first.
pub fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(line),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("no answer from kited: {e} (partial: {line:?})"),
    }
}

/// Sends `request` on a new connection and returns the answer, with `timeout` for each step.
pub fn ask(socket: &Path, request: &Value, timeout: Duration) -> Value {
    let stream = connect(socket, timeout);
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .expect("cannot write a request");
    let line = read_line(&mut BufReader::new(&stream))
        .unwrap_or_else(|| panic!("kited closed the connection instead of answering {request}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {line:?}"))
}

/// A `ping` on a fresh connection that must succeed within [`PING_LIMIT`]; returns its time.
pub fn ping_fast(daemon: &Daemon) -> Duration {
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

pub fn exchange(daemon: &Daemon, request_token: &str) -> Value {
    daemon.request(&json!({"op": "exchange", "request_token": request_token}))
}

pub fn assert_alive(daemon: &mut Daemon, pid: u32) {
    assert!(daemon.is_running(), "kited died; log:\n{}", daemon.log());
    assert_eq!(daemon.pid(), pid, "kited was restarted");
    ping_fast(daemon);
}

/// Sends an `exchange` on its own connection now, and reads its answer on another thread.
/// The answer is `None` when kited died before answering.
pub fn exchange_in_background(
    socket: &Path,
    request_token: &str,
) -> thread::JoinHandle<Option<Value>> {
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

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
}
