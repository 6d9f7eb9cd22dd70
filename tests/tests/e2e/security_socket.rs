//! Attacks by another local user on the socket directory and the daemon behind it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kite_tests::harness::bin;
use kite_tests::{Daemon, Sim};
use serde_json::json;

use crate::helper::uid::{
    as_user, become_user, finish, require_root, Running, ATTACKER, PROCESS_DEADLINE,
};
use crate::helper::{mode, sim, text};

/// `/tmp/kited-UID`, the socket directory of a user without `XDG_RUNTIME_DIR`; removed before
/// and after the test.
struct FallbackDir(PathBuf);

impl FallbackDir {
    fn of(uid: u32) -> FallbackDir {
        let path = PathBuf::from(format!("/tmp/kited-{uid}"));
        remove_any(&path);
        FallbackDir(path)
    }
}

impl Drop for FallbackDir {
    fn drop(&mut self) {
        remove_any(&self.0);
    }
}

fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// A scratch directory owned by `uid` (0700), removed at the end.
fn private_dir_of(uid: u32) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kited-sec-")
        .tempdir()
        .expect("temp dir");
    rustix::fs::chown(
        dir.path(),
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(uid)),
    )
    .expect("chown the scratch dir");
    dir
}

/// A fake kited: a socket served by a thread running as `uid`, answering every request with a
/// token, a status or a pong of the attacker's choosing; records what it was sent.
struct FakeDaemon {
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeDaemon {
    /// Binds `path` as `uid` (creating its directory with `dir_mode` if missing) and serves it.
    fn serve(uid: u32, path: &Path, dir_mode: u32) -> FakeDaemon {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        let record = seen.clone();
        std::thread::spawn(move || {
            become_user(uid);
            let dir = path.parent().unwrap();
            if !dir.exists() {
                std::fs::create_dir(dir).unwrap();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
            }
            let listener = UnixListener::bind(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
            ready_tx.send(()).unwrap();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        record.lock().unwrap().push(line.clone());
                        let _ = writer.write_all(fake_answer(&line).as_bytes());
                    }
                });
            }
        });
        ready_rx
            .recv_timeout(PROCESS_DEADLINE)
            .expect("the fake daemon did not start");
        FakeDaemon { seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

const ATTACKER_TOKEN: &str = "attackerstoken0000000000000000000";

fn fake_answer(request: &str) -> String {
    let status = json!({
        "configured": true, "state": "valid", "valid": true, "needs_refresh": false,
        "user_id": "EV1L00", "user_name": "Mallory", "login_time": "2026-11-23T09:00:00+05:30",
        "expires_at": "2099-11-24T06:00:00+05:30", "seconds_left": 3600, "profile": "default",
        "api_key": "attackerkey00001", "hint": ""
    });
    let answer = if request.contains("get_token") {
        json!({"ok": true, "access_token": ATTACKER_TOKEN, "api_key": "attackerkey00001",
               "expires_at": "2099-11-24T06:00:00+05:30"})
    } else if request.contains("login_url") {
        json!({"ok": true, "login_url": "http://127.0.0.1:9/evil", "callback_url": "http://127.0.0.1:9/cb"})
    } else if request.contains("status") || request.contains("exchange") {
        json!({"ok": true, "status": status})
    } else {
        json!({"ok": true, "version": "6.6.6"})
    };
    format!("{answer}\n")
}

/// `kitectl ARGS` as `uid`, without `XDG_RUNTIME_DIR` (so the socket is `/tmp/kited-UID`),
/// with `stdin` as its input.
fn kitectl_as(uid: u32, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(bin("kitectl"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .args(args)
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kitectl");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    finish(child)
}

/// Asserts exit 3, nothing on stdout, and one stderr line naming `path` and `what`.
fn assert_refused(out: &Output, path: &Path, what: &str) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.is_empty(), "kitectl printed: {stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(
        lines[0].starts_with("kitectl: ") && lines[0].contains(&*path.to_string_lossy()),
        "the error should name {}: {stderr}",
        path.display()
    );
    assert!(
        lines[0].contains(what),
        "the error should say {what:?}: {stderr}"
    );
}

// 1. The socket's directory and peer are verified

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn kitectl_refuses_a_socket_dir_another_user_created_first() {
    require_root();
    let victim = 61001;
    let dir = FallbackDir::of(victim);
    let fake = FakeDaemon::serve(ATTACKER, &dir.0.join("default.sock"), 0o755);

    let out = kitectl_as(victim, &["get-token"], "");
    assert_refused(&out, &dir.0, "belongs to uid 65534");
    // The request token the victim pastes must never reach the impostor.
    let request_token = "victimsrequesttoken0000000000000";
    let out = kitectl_as(victim, &["exchange"], request_token);
    assert_refused(&out, &dir.0, "belongs to uid 65534");
    let out = kitectl_as(victim, &["login"], "");
    assert_refused(&out, &dir.0, "belongs to uid 65534");
    assert_eq!(
        fake.seen(),
        Vec::<String>::new(),
        "kitectl talked to the impostor"
    );
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn kitectl_refuses_a_socket_dir_others_can_write() {
    require_root();
    let victim = 61002;
    let dir = FallbackDir::of(victim);
    // The victim's own directory, but left writable by everyone: anyone may have put the
    // socket there.
    std::fs::create_dir(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let id = |n| Some(rustix::process::Uid::from_raw(n));
    rustix::fs::chown(
        &dir.0,
        id(victim),
        Some(rustix::process::Gid::from_raw(victim)),
    )
    .unwrap();
    let fake = FakeDaemon::serve(ATTACKER, &dir.0.join("default.sock"), 0o777);

    let out = kitectl_as(victim, &["get-token"], "");
    assert_refused(&out, &dir.0, "can be written by other users");
    assert_eq!(fake.seen(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn kitectl_refuses_a_daemon_running_as_another_user() {
    require_root();
    let victim = 61003;
    let dir = FallbackDir::of(victim);
    // The directory and the socket file both look like the victim's (root arranges that, as a
    // stale inode or a race could), but the process listening is the attacker's: only the
    // kernel's SO_PEERCRED tells.
    let lair = private_dir_of(ATTACKER);
    std::fs::set_permissions(lair.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let planted = lair.path().join("default.sock");
    let fake = FakeDaemon::serve(ATTACKER, &planted, 0o755);
    std::fs::create_dir(&dir.0).unwrap();
    let (uid, gid) = (
        Some(rustix::process::Uid::from_raw(victim)),
        Some(rustix::process::Gid::from_raw(victim)),
    );
    rustix::fs::chown(&dir.0, uid, gid).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = dir.0.join("default.sock");
    std::fs::rename(&planted, &socket).unwrap();
    rustix::fs::chown(&socket, uid, gid).unwrap();

    let out = kitectl_as(victim, &["get-token"], "");
    assert_refused(&out, &socket, "runs as uid 65534");
    assert!(
        fake.seen().is_empty(),
        "a request reached the impostor: {:?}",
        fake.seen()
    );
}

/// Starts `kited` as `uid` without `XDG_RUNTIME_DIR`, its state in `home`.
fn kited_as(uid: u32, home: &Path, sim: &Sim) -> Child {
    Command::new(bin("kited"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("KITE_API_ROOT", sim.url())
        .env("KITE_LOGIN_URL", sim.login_url())
        .args(["--listen", "127.0.0.1:0", "run"])
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kited")
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn kited_says_plainly_that_another_user_took_its_socket_dir() {
    require_root();
    let sim = sim();
    let victim = 61004;
    let dir = FallbackDir::of(victim);
    as_user(ATTACKER, {
        let dir = dir.0.clone();
        move || {
            std::fs::create_dir(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        }
    });
    let home = private_dir_of(victim);
    let out = Running(Some(kited_as(victim, home.path(), &sim))).wait_failed();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "kited started in another user's dir");
    assert!(
        stderr.contains("/tmp/kited-61004 belongs to uid 65534"),
        "kited should say who owns the directory: {stderr}"
    );
    assert!(!stderr.contains("Operation not permitted"), "{stderr}");
    assert_eq!(
        mode(&dir.0),
        0o777,
        "kited changed a directory it did not create"
    );
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "kited left a socket there"
    );
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn kited_never_follows_a_symlink_planted_as_its_socket_dir() {
    require_root();
    let sim = sim();
    let victim = 61005;
    let dir = FallbackDir::of(victim);
    let lair = private_dir_of(ATTACKER);
    std::fs::set_permissions(lair.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    as_user(ATTACKER, {
        let (dir, lair) = (dir.0.clone(), lair.path().to_path_buf());
        move || std::os::unix::fs::symlink(lair, dir).unwrap()
    });
    let home = private_dir_of(victim);
    let out = Running(Some(kited_as(victim, home.path(), &sim))).wait_failed();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "kited followed the link");
    assert!(
        stderr.contains("/tmp/kited-61005 is a symbolic link"),
        "kited should say the directory is a link: {stderr}"
    );
    assert_eq!(
        mode(lair.path()),
        0o777,
        "kited changed the attacker's directory"
    );
    assert_eq!(std::fs::read_dir(lair.path()).unwrap().count(), 0);
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn kited_makes_its_fallback_dir_private_and_kitectl_trusts_it() {
    require_root();
    let sim = sim();
    let victim = 61006;
    let dir = FallbackDir::of(victim);
    let home = private_dir_of(victim);
    let mut kited = Running(Some(kited_as(victim, home.path(), &sim)));
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        let out = kitectl_as(victim, &["ping"], "");
        if out.status.success() {
            break;
        }
        if let Ok(Some(status)) = kited.0.as_mut().unwrap().try_wait() {
            panic!(
                "kited exited ({status}): {}",
                text(&kited.wait_failed().stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "kitectl never reached kited: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let meta = std::fs::symlink_metadata(&dir.0).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), victim);
    assert_eq!(mode(&dir.0), 0o700);
    let socket = dir.0.join("default.sock");
    assert_eq!(std::fs::symlink_metadata(&socket).unwrap().uid(), victim);
    // A stop removes the socket it bound.
    let pid = rustix::process::Pid::from_raw(kited.0.as_ref().unwrap().id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = kited.wait_failed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!socket.exists(), "the socket was left behind");
}

// 11. On stop, kited removes the socket file only if it is still its own

#[test]
fn a_stopping_kited_leaves_another_kiteds_socket_alone() {
    let sim = sim();
    let mut first = Daemon::start(&sim);
    let socket = first.socket_path().to_path_buf();
    // The first daemon's socket is moved aside (as an admin or a second start might), and a
    // second kited binds the same path.
    std::fs::rename(&socket, first.dir().join("moved.sock")).unwrap();
    let second = Daemon::builder(&sim).socket(&socket).start();
    let inode = std::fs::metadata(&socket).unwrap().ino();
    first.terminate();
    let meta = std::fs::symlink_metadata(&socket).expect("the second kited's socket was removed");
    assert_eq!(meta.ino(), inode);
    let answer = second.request(&json!({"op": "ping"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
}

// 2. No other local user can take the token over HTTP or read the request token
