//! The IPC socket: garbage and hang-ups, private files whatever the umask, stale and contested sockets, peers of another uid.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kite_tests::{Daemon, DaemonBuilder};

use crate::helper::ctl::{
    code, ctl_exchange, ctl_fails, ctl_get_token, ctl_status_json, describe, one_error_line,
};
use crate::helper::files::{inode, is_socket};
use crate::helper::{browser_login, daemon_lines, mode, sim};
use serde_json::{json, Value};

/// One NDJSON connection that keeps its reader (several requests per connection).
struct Ipc {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Ipc {
    fn open(daemon: &Daemon) -> Ipc {
        let stream = daemon.connect_ipc();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Ipc { stream, reader }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the socket");
    }

    fn read_answer(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read an answer");
        assert!(n > 0, "kited closed the connection instead of answering");
        assert!(line.ends_with('\n'), "answer is not a whole line: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {line:?}"))
    }

    fn ask_raw(&mut self, bytes: &[u8]) -> Value {
        self.send_raw(bytes);
        self.read_answer()
    }
}

fn assert_bad_request(what: &str, answer: &Value) {
    assert_eq!(answer["ok"], json!(false), "{what}: {answer}");
    assert_eq!(
        answer["error"]["kind"],
        json!("bad_request"),
        "{what}: {answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: the error should say why: {answer}"
    );
}

/// Every entry under `dir` with its mode, recursively.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, bool, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let is_dir = meta.is_dir();
        out.push((path.clone(), is_dir, meta.permissions().mode() & 0o7777));
        if is_dir {
            walk(&path, out);
        }
    }
}

// 1. The whole browser flow

#[test]
fn garbage_ipc_gets_bad_request_and_the_daemon_survives() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);

    // Several requests, good and bad, on one connection.
    let mut ipc = Ipc::open(&daemon);
    let ping = ipc.ask_raw(b"{\"op\":\"ping\"}\n");
    assert_eq!(ping["ok"], json!(true), "{ping}");
    assert!(
        ping["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{ping}"
    );
    let cases: [(&str, &[u8]); 8] = [
        ("garbage", b"garbage\n"),
        ("empty object", b"{}\n"),
        ("unknown op", b"{\"op\":\"fly\"}\n"),
        (
            "wait_secs of the wrong type",
            b"{\"op\":\"get_token\",\"wait_secs\":\"x\"}\n",
        ),
        (
            "negative wait_secs",
            b"{\"op\":\"get_token\",\"wait_secs\":-1}\n",
        ),
        ("op not a string", b"{\"op\":7}\n"),
        ("an array", b"[1,2,3]\n"),
        ("invalid UTF-8", b"{\"op\":\"pi\xff\xfeng\"}\n"),
    ];
    for (what, bytes) in cases {
        let answer = ipc.ask_raw(bytes);
        assert_bad_request(what, &answer);
    }
    // The connection still serves.
    let status = ipc.ask_raw(b"{\"op\":\"status\"}\n");
    assert_eq!(status["ok"], json!(true), "{status}");
    assert_eq!(status["status"]["state"], json!("none"), "{status}");
    // Two requests in one write get two answers, in order.
    ipc.send_raw(b"{\"op\":\"ping\"}\n{\"op\":\"nope\"}\n");
    assert_eq!(ipc.read_answer()["ok"], json!(true));
    assert_bad_request("second of a pair", &ipc.read_answer());

    // A 70 KiB line: an error answer (the connection may close afterwards).
    let mut long = Ipc::open(&daemon);
    let mut line = b"{\"op\":\"ping\",\"pad\":\"".to_vec();
    line.resize(70 * 1024, b'a');
    line.extend_from_slice(b"\"}\n");
    let answer = long.ask_raw(&line);
    assert_bad_request("70 KiB line", &answer);
    drop(long);

    // A slow client holding half a line does not block anyone.
    let mut slow = Ipc::open(&daemon);
    slow.send_raw(b"{\"op\":");

    // A fresh connection still works, and so does kitectl.
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], json!(true), "{ping}");
    assert_eq!(ctl_status_json(&daemon)["state"], json!("none"));
    // The slow client can finish its request afterwards.
    let answer = slow.ask_raw(b"\"ping\"}\n");
    assert_eq!(answer["ok"], json!(true), "{answer}");
    assert!(daemon.is_running(), "kited died; log:\n{}", daemon.log());
}

#[test]
fn a_client_that_hangs_up_mid_request_does_not_hurt() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    for bytes in [&b"{\"op\":\"pi"[..], b"", &[0xff; 100 * 1024][..]] {
        let mut stream = daemon.connect_ipc();
        let _ = stream.write_all(bytes);
        drop(stream);
    }
    // A waiting get_token whose client disappears.
    {
        let mut ipc = Ipc::open(&daemon);
        ipc.send_raw(b"{\"op\":\"get_token\",\"wait_secs\":30}\n");
    }
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], json!(true), "{ping}");
    assert!(daemon.is_running());
    // Over-long invalid UTF-8: an error answer or a close, never an ok.
    let mut stream = daemon.connect_ipc();
    let mut bytes = vec![0xffu8; 70 * 1024];
    bytes.push(b'\n');
    stream.write_all(&bytes).unwrap();
    let mut answer = String::new();
    let _ = BufReader::new(&mut stream).read_line(&mut answer);
    if !answer.is_empty() {
        let value: Value = serde_json::from_str(&answer).unwrap();
        assert_bad_request("70 KiB of invalid UTF-8", &value);
    }
    drop(stream);
    let ping = daemon.request(&json!({"op": "ping"}));
    assert_eq!(ping["ok"], json!(true), "{ping}");
}

// 10. Files, modes, stale and live sockets, one daemon per state dir and socket

#[test]
fn socket_and_state_files_are_private_whatever_the_umask() {
    let sim = sim();
    let outer = tempfile::tempdir().unwrap();
    let socket = outer.path().join("fresh").join("sub").join("kited.sock");
    // Start kited under a permissive umask: it must make its files private by itself.
    let daemon = Daemon::builder(&sim).socket(&socket).umask(0o000).start();

    assert!(is_socket(&socket), "{} is not a socket", socket.display());
    assert_eq!(mode(&socket), 0o600, "socket mode");
    assert_eq!(
        mode(socket.parent().unwrap()),
        0o700,
        "socket directory mode"
    );
    assert_eq!(
        mode(&outer.path().join("fresh")),
        0o700,
        "created parent mode"
    );

    // Write a token so sled has written everything it writes.
    browser_login(&daemon);
    let state = daemon.state_dir();
    assert_eq!(mode(state), 0o700, "state dir mode");
    let mut entries = Vec::new();
    walk(state, &mut entries);
    assert!(
        entries.len() > 1,
        "the state dir should hold the store: {entries:?}"
    );
    for (path, is_dir, m) in &entries {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{} has mode {m:o}", path.display());
    }
}

#[test]
fn stale_socket_from_a_crash_is_replaced() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let token = browser_login(&daemon).token;
    daemon.kill9();
    assert!(
        is_socket(daemon.socket_path()),
        "kill -9 should leave the socket file behind (the test needs a stale one)"
    );
    // A hard link keeps the stale socket's inode alive, so a new socket cannot reuse its number.
    let held = daemon.dir().join("stale-socket-link");
    std::fs::hard_link(daemon.socket_path(), &held).unwrap();
    let old_inode = inode(&held);
    // kitectl says not running for a stale socket.
    let line = ctl_fails(&daemon, &["get-token"], 3);
    assert!(line.contains("not running"), "{line}");

    daemon.restart();
    assert!(is_socket(daemon.socket_path()));
    assert_ne!(
        inode(daemon.socket_path()),
        old_inode,
        "a new socket was bound"
    );
    assert_eq!(mode(daemon.socket_path()), 0o600);
    assert_eq!(ctl_get_token(&daemon), token);
}

/// Spawns a second kited from `builder`, which shares `what` with a running one, and asserts
/// that it exits with a failure; returns it, for its log.
fn second_daemon_fails(builder: DaemonBuilder, what: &str) -> Daemon {
    let mut second = builder.keep_redirect().spawn();
    let status = second
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "a second kited on {what} kept running; log:\n{}",
                second.log()
            )
        });
    assert!(!status.success(), "second kited should fail: {status}");
    second
}

#[test]
fn second_daemon_on_the_same_state_dir_refuses() {
    let sim = sim();
    let mut first = Daemon::start(&sim);
    let token = browser_login(&first).token;

    let second = second_daemon_fails(
        Daemon::builder(&sim).state_dir(first.state_dir()),
        "the same state dir",
    );
    let log = second.log();
    assert!(
        log.contains("another kited is already running for profile default"),
        "log:\n{log}"
    );
    let lines = daemon_lines(&log);
    assert_eq!(lines.len(), 1, "one stderr line expected:\n{log}");

    // The first one is untouched.
    assert!(first.is_running());
    assert_eq!(ctl_get_token(&first), token);
}

#[test]
fn second_daemon_on_the_same_socket_does_not_steal_it() {
    let sim = sim();
    let mut first = Daemon::start(&sim);
    let token = browser_login(&first).token;
    let inode_before = inode(first.socket_path());

    let second = second_daemon_fails(
        Daemon::builder(&sim).socket(first.socket_path()),
        "a live socket",
    );
    let log = second.log();
    assert!(
        log.contains("another kited") || log.contains("already"),
        "the refusal should say another kited listens there; log:\n{log}"
    );

    assert!(first.is_running());
    assert!(
        is_socket(first.socket_path()),
        "the live socket was removed"
    );
    assert_eq!(
        inode(first.socket_path()),
        inode_before,
        "the live socket was replaced"
    );
    assert_eq!(ctl_get_token(&first), token);
    // And the first still serves HTTP (the second never bound over it).
    assert_eq!(first.http_get("/healthz").0, 200);
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn peers_of_another_uid_are_refused() {
    assert!(
        rustix::process::geteuid().is_root(),
        "acts as a second uid: needs root"
    );
    let sim = sim();
    let daemon = Daemon::start(&sim);
    ctl_exchange(&daemon, &sim.issue_request_token());
    // Open the file permissions so only the daemon's own uid check stands in the way: the
    // socket, and the directories from it up to the daemon's temp dir (nothing above that).
    std::fs::set_permissions(daemon.socket_path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    for dir in daemon.socket_path().ancestors().skip(1) {
        if !dir.starts_with(daemon.dir()) {
            assert!(
                mode(dir) & 0o001 != 0,
                "{} is not searchable by other users: the second uid cannot reach the socket",
                dir.display()
            );
            continue;
        }
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode(dir) | 0o711)).unwrap();
    }
    use std::os::unix::process::CommandExt;
    let out = daemon
        .ctl_command(&["get-token"])
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run kitectl as nobody");
    assert_ne!(code(&out), Some(0), "{}", describe(&["get-token"], &out));
    assert!(
        out.stdout.is_empty(),
        "another user got the token: {}",
        describe(&["get-token"], &out)
    );
    let line = one_error_line(&["get-token"], &out);
    assert!(
        !line.contains("permission denied"),
        "the file modes, not kited's uid check, refused the client: {line}"
    );
    // The person must learn why: kited refused them as another user. Not "lost the
    // connection: Broken pipe" (exit 3, as if kited were down), which is what they see when
    // kited hangs up before kitectl has written its request.
    assert!(
        line.contains("user"),
        "the refusal should say kited serves only its own user: {line}"
    );
}

// 11. Not configured
