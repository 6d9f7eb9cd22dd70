//! kited and kitectl against local misuse that needs no second uid: clients that never read,
//! two daemons racing for one socket, a `--socket` given as a symlink, secrets in children's
//! environments and loose file modes.
//!
//! Every wait is a poll with a deadline; every process started here is owned by a guard.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use kite_proto::checksum::postback_checksum;
use kite_tests::harness::eventually;
use kite_tests::Daemon;
use serde_json::Value;

use crate::helper::sim;

// ---------------------------------------------------------------------------------------------
// A stop waits for no client
// ---------------------------------------------------------------------------------------------

/// How many `watch` clients that never read: enough that waiting for each in turn is obvious.
const STUCK_WATCHERS: usize = 200;
/// Bytes of padding per postback, so that a few events fill a watcher's socket buffer (the
/// body must stay under kited's 64 KiB limit).
const POSTBACK_PADDING: usize = 50_000;
/// Bytes queued for a watcher that show its buffer is full enough that kited's next write to
/// it blocks (Linux's default socket buffers hold roughly 200 KiB).
const QUEUED_WHEN_STUCK: u64 = 100_000;

/// Sends `{"op":"watch"}` and reads its `{"ok":true}` byte by byte, so that nothing of the
/// events after it is taken off the socket.
fn subscribed_watcher(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).expect("cannot connect to kited");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"{\"op\":\"watch\"}\n").unwrap();
    let mut ack = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        stream.read_exact(&mut byte).expect("no answer to watch");
        ack.push(byte[0]);
    }
    let ack: Value = serde_json::from_slice(&ack).unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    stream
}

fn padded_postback(secret: &str) -> Vec<u8> {
    let mut order: Value = serde_json::from_str(include_str!("../../mocks/postback.json")).unwrap();
    order["checksum"] = Value::String(postback_checksum(
        order["order_id"].as_str().unwrap(),
        order["order_timestamp"].as_str().unwrap(),
        secret,
    ));
    order["tag"] = Value::String("p".repeat(POSTBACK_PADDING));
    serde_json::to_vec(&order).unwrap()
}

#[test]
fn a_stop_waits_for_no_watcher_that_does_not_read() {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim)
        .config_toml("[http]\npostbacks = true\n")
        .start();
    let watchers: Vec<UnixStream> = (0..STUCK_WATCHERS)
        .map(|_| subscribed_watcher(daemon.socket_path()))
        .collect();
    let body = padded_postback(&sim.api_secret());
    let queued = |w: &UnixStream| rustix::io::ioctl_fionread(w).unwrap_or(0);
    let post = || {
        let reply = daemon.http(
            "POST",
            "/kite/postback",
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
    };
    // Each postback is an event for every watcher; post until every watcher's buffer is full
    // and its total stops growing: then kited's write of the next event to each is stuck.
    let total = || watchers.iter().map(queued).sum::<u64>();
    let mut last_total = 0;
    eventually(
        Duration::from_secs(60),
        "every watcher's buffer to fill",
        || {
            post();
            post();
            std::thread::sleep(Duration::from_millis(100));
            let now = total();
            let full = now == last_total && watchers.iter().all(|w| queued(w) >= QUEUED_WHEN_STUCK);
            last_total = now;
            full
        },
    );

    let asked = Instant::now();
    daemon.signal(rustix::process::Signal::TERM);
    let status = daemon.wait_exit(Duration::from_secs(20));
    let took = asked.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        daemon.log()
    );
    assert!(
        took < Duration::from_secs(2),
        "kited took {took:?} to stop with {STUCK_WATCHERS} watchers that do not read"
    );
    assert!(
        !daemon.socket_path().exists(),
        "the socket file outlived the daemon"
    );
    drop(watchers);
}
