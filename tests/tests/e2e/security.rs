//! kited and kitectl against hostile local users, hostile Kite answers, broken pipes and full
//! disks. The attacker is a real second uid: CI runs as root, so a thread of this test process
//! switches its own credentials (on Linux uids are per thread) to `nobody`, or a child process
//! is started as another uid; the victim is often a non-root uid too, so that "root may do
//! anything" exceptions cannot hide a hole.
//!
//! Every wait is a poll with a deadline; every process and directory made here is removed by a
//! guard, also when a test fails.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kite_tests::harness::bin;
use kite_tests::http_client::{self, HttpReply};
use kite_tests::{Daemon, Sim, SimConfig};
use serde_json::{json, Value};

use crate::helper::{exchange_calls, mode, sim, text};

// ---------------------------------------------------------------------------------------------
// Other users
// ---------------------------------------------------------------------------------------------

/// The attacker: `nobody`.
const ATTACKER: u32 = 65534;
/// How long a process started here may take to finish.
const PROCESS_DEADLINE: Duration = Duration::from_secs(15);

/// Why the tests that act as a second uid are ignored where the build was not root (see
/// `tests/build.rs`); under `CI=true` they run, and [`require_root`] fails them if not root.
const NEEDS_ROOT: &str = "acts as a second uid: needs root (CI runs as root)";

/// Fails the test, with the reason, when it cannot act as another uid.
fn require_root() {
    assert!(rustix::process::geteuid().is_root(), "{NEEDS_ROOT}");
}

/// Switches the calling thread (only) to `uid`, with the same gid and no supplementary groups.
fn become_user(uid: u32) {
    let id = |n| rustix::process::Gid::from_raw(n);
    rustix::thread::set_thread_groups(&[]).expect("setgroups");
    rustix::thread::set_thread_res_gid(id(uid), id(uid), id(uid)).expect("setresgid");
    let uid = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).expect("setresuid");
}

/// Runs `f` on a thread of its own as `uid` and returns what it returns.
fn as_user<T: Send + 'static>(uid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        become_user(uid);
        f()
    })
    .join()
    .expect("the other user's thread panicked")
}

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

/// Waits for `child` up to [`PROCESS_DEADLINE`], killing it if it does not finish.
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "process did not finish within {PROCESS_DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
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

// ---------------------------------------------------------------------------------------------
// 1. The socket's directory and peer are verified
// ---------------------------------------------------------------------------------------------

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

/// Kills a process when dropped (a kited that should have refused to start, or a victim's).
struct Running(Option<Child>);

impl Running {
    fn wait_failed(mut self) -> Output {
        finish(self.0.take().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
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

// ---------------------------------------------------------------------------------------------
// 11. On stop, kited removes the socket file only if it is still its own
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 2. No other local user can take the token over HTTP or read the request token
// ---------------------------------------------------------------------------------------------

/// An HTTP request to `daemon` made by `uid` (a thread running as that user).
fn http_as(uid: u32, daemon: &Daemon, method: &str, path: &str, body: Option<Value>) -> HttpReply {
    let url = format!("{}{path}", daemon.base_url());
    let method = method.to_string();
    as_user(uid, move || {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        http_client::request(&method, &url, headers, body.as_bytes()).expect("HTTP request")
    })
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn another_user_cannot_exchange_a_request_token_over_http() {
    require_root();
    let sim = sim();
    let daemon = Daemon::start(&sim);
    // The attacker read the victim's request token (from `ps`, say) and races to post it.
    let request_token = sim.issue_request_token();
    let reply = http_as(
        ATTACKER,
        &daemon,
        "POST",
        "/api/token/generate-access-token",
        Some(json!({"request_token": request_token})),
    );
    assert_eq!(reply.status, 403, "{}", reply.text());
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.starts_with("Failed to generate access token:") && detail.contains("only the user"),
        "{detail}"
    );
    assert!(!reply.text().contains("access_token\""), "{}", reply.text());
    assert_eq!(
        exchange_calls(&sim),
        0,
        "the request token was spent for the attacker"
    );
    // The victim's own exchange still works with the same request token.
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": request_token}),
    );
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        sim.valid_access_tokens(),
        vec![token["access_token"].as_str().unwrap().to_string()]
    );
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn another_user_sees_the_status_without_whose_account_it_is() {
    require_root();
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": sim.issue_request_token()}),
    );
    assert_eq!(status, 200, "{body}");
    let theirs = http_as(ATTACKER, &daemon, "GET", "/api/token/status", None);
    assert_eq!(theirs.status, 200, "{}", theirs.text());
    let theirs = theirs.json();
    assert_eq!(theirs["state"], json!("valid"), "{theirs}");
    for hidden in ["user_id", "user_name", "api_key"] {
        assert!(
            theirs[hidden].is_null(),
            "{hidden} shown to another user: {theirs}"
        );
    }
    let (_, _, mine) = daemon.http_get("/api/token/status");
    let mine: Value = serde_json::from_str(&mine).unwrap();
    assert_eq!(mine["user_id"], json!("AB1234"), "{mine}");
    assert_eq!(mine["api_key"], json!(sim.api_key()), "{mine}");
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn the_browser_callback_stays_open_to_other_users() {
    require_root();
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let login = daemon.ctl(&["login"]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    let login_url = text(&login.stdout).trim().to_string();
    // A reverse proxy (another uid) carries Kite's redirect to kited.
    let location = http_client::get(&login_url)
        .unwrap()
        .header("location")
        .expect("the sim redirects")
        .to_string();
    let path = location.trim_start_matches(&daemon.base_url()).to_string();
    let reply = http_as(ATTACKER, &daemon, "GET", &path, None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.text().contains("Logged in as Kite Tester"),
        "{}",
        reply.text()
    );
    assert_eq!(sim.valid_access_tokens().len(), 1);
}

#[test]
fn the_json_exchange_route_can_be_turned_off() {
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .config_toml("[http]\nexchange_api = false\n")
        .start();
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": sim.issue_request_token()}),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("http.exchange_api = false"), "{body}");
    assert_eq!(exchange_calls(&sim), 0);
    // The browser login still works.
    let login = daemon.ctl(&["login"]);
    let (status, page) = kite_tests::follow_browser_login(&daemon, text(&login.stdout).trim());
    assert_eq!(status, 200, "{page}");
}

#[test]
fn kitectl_exchange_reads_the_url_from_stdin_not_the_command_line() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let run = |args: &[&str], input: &str| {
        let mut child = daemon
            .ctl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        finish(child)
    };
    for args in [&["exchange"][..], &["exchange", "-"]] {
        let url = format!(
            "{}?action=login&type=login&status=success&request_token={}\n",
            daemon.callback_url(),
            sim.issue_request_token()
        );
        let out = run(args, &url);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("Logged in as Kite Tester"),
            "{}",
            text(&out.stdout)
        );
        assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
    }
    assert_eq!(exchange_calls(&sim), 2);
    // Nothing piped in: one clear line, nothing sent to Kite.
    let out = run(&["exchange"], "\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nothing to exchange"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(exchange_calls(&sim), 2);
    // The argument form still works, and says why it is the less safe one.
    let out = daemon.ctl(&["exchange", &sim.issue_request_token()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("can be read by other local users"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A broken log pipe never kills the daemon
// ---------------------------------------------------------------------------------------------

/// A `kited` started by hand (not by the harness) against `sim`, everything under `dir`:
/// socket `dir/kited.sock`, state `dir/state`, HTTP on `listen`.
fn kited_command(sim: &Sim, dir: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(bin("kited"));
    kited_args(&mut cmd, sim, dir, listen);
    cmd
}

/// The environment and arguments of [`kited_command`], for a `cmd` that ends up running kited.
fn kited_args(cmd: &mut Command, sim: &Sim, dir: &Path, listen: &str) {
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("RUST_LOG", "info")
        .env("KITE_API_ROOT", sim.url())
        .env("KITE_LOGIN_URL", sim.login_url())
        .env("KITE_API_KEY", sim.api_key())
        .env("KITE_API_SECRET", sim.api_secret())
        .arg("--socket")
        .arg(dir.join("kited.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--listen", listen, "run"])
        .stdin(Stdio::null());
}

/// One request on a fresh connection to `socket`; `None` when kited hung up without answering.
fn ask(socket: &Path, request: &Value) -> Option<Value> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(PROCESS_DEADLINE)).unwrap();
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .ok()?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

#[test]
fn kited_keeps_answering_after_its_log_reader_went_away() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let mut child = kited_command(&sim, dir.path(), "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kited");
    let stderr = child.stderr.take().unwrap();
    let mut kited = Running(Some(child));
    // Read the log until kited is ready, then close the read end as a dying `| tee` would.
    let mut log = BufReader::new(stderr);
    let mut seen = String::new();
    while !seen.contains("kited is ready") {
        let before = seen.len();
        log.read_line(&mut seen).unwrap();
        assert!(
            seen.len() > before,
            "kited exited before it was ready: {seen}"
        );
    }
    drop(log);
    drop(kited.0.as_mut().unwrap().stdout.take());

    let socket = dir.path().join("kited.sock");
    let request_token = sim.issue_request_token();
    let answer = ask(
        &socket,
        &json!({"op": "exchange", "request_token": request_token}),
    );
    let answer = answer.expect("kited died at its first log line after the reader went away");
    assert_eq!(answer["ok"], json!(true), "{answer}");
    for _ in 0..3 {
        let token = ask(&socket, &json!({"op": "get_token"})).expect("no answer to get_token");
        assert_eq!(
            token["access_token"].as_str(),
            sim.valid_access_tokens().first().map(String::as_str),
            "{token}"
        );
    }
    assert!(
        kited.0.as_mut().unwrap().try_wait().unwrap().is_none(),
        "kited exited"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A full disk is survivable
// ---------------------------------------------------------------------------------------------

/// Size of the file system the state dir gets: room for sled, and quick to fill.
const SMALL_DISK: &str = "size=1m";

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "acts as a second uid: needs root (CI runs as root)"
)]
fn a_full_disk_is_reported_spends_no_request_token_and_heals_by_itself() {
    require_root();
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let port = kite_tests::harness::free_port();
    let listen = format!("127.0.0.1:{port}");
    // kited runs in a mount namespace of its own where the state dir is a 1 MB tmpfs; the test
    // reaches that file system through /proc/PID/root.
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o {SMALL_DISK},mode=0700 tmpfs \"$0\" && exec \"$@\""
        ))
        .arg(&state)
        .arg(bin("kited"));
    kited_args(&mut cmd, &sim, dir.path(), &listen);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("unshare kited");
    let pid = child.id();
    let mut kited = Running(Some(child));
    let socket = dir.path().join("kited.sock");
    let deadline = Instant::now() + PROCESS_DEADLINE;
    while ask(&socket, &json!({"op": "ping"})).is_none() {
        if let Ok(Some(_)) = kited.0.as_mut().unwrap().try_wait() {
            panic!("kited exited: {}", text(&kited.wait_failed().stderr));
        }
        assert!(Instant::now() < deadline, "kited did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let exchange = |request_token: &str| {
        ask(
            &socket,
            &json!({"op": "exchange", "request_token": request_token}),
        )
        .expect("kited answers the exchange")
    };
    let first = exchange(&sim.issue_request_token());
    assert_eq!(first["ok"], json!(true), "{first}");

    // Fill the disk holding the state dir.
    let inside = PathBuf::from(format!("/proc/{pid}/root")).join(state.strip_prefix("/").unwrap());
    let filler = inside.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
    }
    let healthz = || {
        http_client::get(&format!("http://{listen}/healthz"))
            .expect("GET /healthz")
            .status
    };

    // Every exchange is refused before Kite is asked, so no request token is spent, and the
    // reason is one sentence naming the state dir.
    let spent_before = exchange_calls(&sim);
    let mut refused = String::new();
    for _ in 0..6 {
        refused = sim.issue_request_token();
        let answer = exchange(&refused);
        assert_eq!(answer["ok"], json!(false), "{answer}");
        let message = answer["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(&format!("the disk holding {} is full", state.display()))
                && message.contains("did not use the request token")
                && !message.contains("Os {"),
            "{message}"
        );
    }
    assert_eq!(
        exchange_calls(&sim),
        spent_before,
        "request tokens were spent"
    );
    let status = ask(&socket, &json!({"op": "status"})).unwrap();
    let store_error = status["status"]["store_error"].as_str().unwrap_or_default();
    assert!(store_error.contains("is full"), "{status}");
    assert_eq!(healthz(), 503);
    // The token already stored is still handed out.
    let token = ask(&socket, &json!({"op": "get_token"})).unwrap();
    assert_eq!(token["ok"], json!(true), "{token}");

    // Space is freed: kited notices by itself, and the last refused request token still works.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + PROCESS_DEADLINE;
    while healthz() != 200 {
        assert!(
            Instant::now() < deadline,
            "/healthz stayed failing after space was freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = ask(&socket, &json!({"op": "status"})).unwrap();
    assert!(status["status"].get("store_error").is_none(), "{status}");
    let answer = exchange(&refused);
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let token = ask(&socket, &json!({"op": "get_token"})).unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    assert!(sim.valid_access_tokens().contains(&token), "{token}");
    drop(kited);
}

// ---------------------------------------------------------------------------------------------
// 9. A half-closed client still gets its answer; 10. a repeated key is a bad request
// ---------------------------------------------------------------------------------------------

/// Sends `requests` on one connection, shuts down the sending half (as `nc -N` does), and
/// returns the connection to read the answers from.
fn half_closed(socket: &Path, requests: &[Value]) -> BufReader<std::os::unix::net::UnixStream> {
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(PROCESS_DEADLINE)).unwrap();
    let lines: String = requests.iter().map(|r| format!("{r}\n")).collect();
    (&stream).write_all(lines.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    BufReader::new(stream)
}

/// The next answer line; `None` when kited hung up instead.
fn next_answer(reader: &mut impl BufRead) -> Option<Value> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

#[test]
fn a_half_closed_client_still_gets_its_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    // A ping, then a wait for a login that happens after the client shut down its sending
    // half. kited answers in order on its one thread, so once the pong is here the wait has
    // begun (its line came in the same read).
    let mut waiter = half_closed(
        daemon.socket_path(),
        &[
            json!({"op": "ping"}),
            json!({"op": "get_token", "wait_secs": 30}),
        ],
    );
    let pong = next_answer(&mut waiter).expect("no answer to ping");
    assert_eq!(pong["ok"], json!(true), "{pong}");
    let answer =
        daemon.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let token = next_answer(&mut waiter).expect("kited hung up on the half-closed client");
    assert_eq!(token["ok"], json!(true), "{token}");
    assert_eq!(
        token["access_token"].as_str(),
        sim.valid_access_tokens().first().map(String::as_str)
    );
    // And without a wait.
    let mut reader = half_closed(daemon.socket_path(), &[json!({"op": "get_token"})]);
    let token = next_answer(&mut reader).expect("no answer to a half-closed get_token");
    assert_eq!(token["ok"], json!(true), "{token}");
}

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

// ---------------------------------------------------------------------------------------------
// 12. The token store is bound to one Kite app
// ---------------------------------------------------------------------------------------------

#[test]
fn a_token_of_another_api_key_is_no_token() {
    let demo = sim();
    let mut first = Daemon::start(&demo);
    let answer =
        first.request(&json!({"op": "exchange", "request_token": demo.issue_request_token()}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let state_dir = first.state_dir().to_path_buf();
    first.terminate();

    // The real app, on the same state dir (the demo's leftovers).
    let real = Sim::start(SimConfig {
        api_key: "realappkey000002".into(),
        ..SimConfig::default()
    });
    let second = Daemon::builder(&real).state_dir(&state_dir).start();
    let status = second.request(&json!({"op": "status"}));
    assert_eq!(status["status"]["state"], json!("none"), "{status}");
    assert!(status["status"]["user_id"].is_null(), "{status}");
    assert_eq!(
        status["status"]["api_key"],
        json!("realappkey000002"),
        "{status}"
    );
    for args in [&["get-token"][..], &["env"]] {
        let out = second.ctl(args);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?}: {}",
            text(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed: {}",
            text(&out.stdout)
        );
    }
    drop(second);

    // Back under the demo's key, its token is still there.
    let third = Daemon::builder(&demo).state_dir(&state_dir).start();
    let token = third.request(&json!({"op": "get_token"}));
    assert_eq!(token["ok"], json!(true), "{token}");
    assert_eq!(token["api_key"], json!(demo.api_key()));
}

// ---------------------------------------------------------------------------------------------
// 5. Kite's fields are validated
// ---------------------------------------------------------------------------------------------

/// Kite's naive IST `login_time` for now plus `offset`.
fn ist_login_time(offset: chrono::Duration) -> String {
    (chrono::Utc::now() + offset)
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[test]
fn unusable_answers_from_kite_are_refused_and_nothing_is_stored() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let refused = |why: &str| {
        let answer =
            daemon.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
        assert_eq!(answer["ok"], json!(false), "{why}: {answer}");
        assert_eq!(answer["error"]["kind"], json!("kite"), "{why}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("kited refused Kite's answer"),
            "{why}: {message}"
        );
        assert!(!message.chars().any(char::is_control), "{why}: {message:?}");
        let status = daemon.request(&json!({"op": "status"}));
        assert_eq!(status["status"]["state"], json!("none"), "{why}: {status}");
    };
    for token in [
        "",
        "has space",
        "line\nbreak",
        "nul\0byte",
        "esc\u{1b}[2Jape",
        "tab\tx",
    ] {
        sim.set_next_access_token(token);
        refused(&format!("access token {token:?}"));
    }
    sim.set_login_time(Some(ist_login_time(chrono::Duration::days(2))));
    refused("a login_time two days ahead");
    sim.set_login_time(Some(ist_login_time(-chrono::Duration::days(10 * 365))));
    refused("a login_time ten years back");
    sim.set_login_time(None);
    let out = daemon.ctl(&["get-token"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
}

#[test]
fn control_characters_in_kites_text_never_reach_terminal_log_or_events() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let mut watch = daemon.connect_ipc();
    watch.write_all(b"{\"op\":\"watch\"}\n").unwrap();
    let mut events = BufReader::new(watch.try_clone().unwrap());
    let mut line = String::new();
    events.read_line(&mut line).unwrap();
    sim.set_user(
        "AB1234",
        "Kite\u{1b}[31m Tester\nKITE_ACCESS_TOKEN=stolen\u{7}",
    );
    let answer =
        daemon.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let name = answer["status"]["user_name"].as_str().unwrap().to_string();
    assert_eq!(name, "Kite[31m TesterKITE_ACCESS_TOKEN=stolen");
    let out = daemon.ctl(&["status"]);
    let shown = text(&out.stdout);
    assert!(shown.contains("Kite[31m Tester"), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    line.clear();
    events.read_line(&mut line).unwrap();
    let event: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], json!("token_new"), "{event}");
    assert!(!line.trim_end().chars().any(char::is_control), "{line:?}");
    assert!(!line.contains("\\u001b") && !line.contains("\\n"), "{line}");
    let log = daemon.log();
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log:?}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("KITE_ACCESS_TOKEN=stolen")),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Pending logins cannot be flushed out
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 7. A crowd of idle connections leaves room for real work
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// 6. The env file: no planted file is opened, and a failed rewrite is reported
// ---------------------------------------------------------------------------------------------

/// Logs in through the socket and waits until `env_file` offers the new token.
fn log_in_and_wait_for_env_file(daemon: &Daemon, sim: &Sim, env_file: &Path) {
    let answer =
        daemon.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    let token = sim.valid_access_tokens().pop().unwrap();
    let deadline = Instant::now() + PROCESS_DEADLINE;
    while !std::fs::read_to_string(env_file)
        .unwrap_or_default()
        .contains(&token)
    {
        assert!(
            Instant::now() < deadline,
            "the env file never got the token"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fifos_planted_beside_the_env_file_never_block_kited() {
    let sim = sim();
    let env_dir = tempfile::tempdir().unwrap();
    let env_file = env_dir.path().join("kite.env");
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[hooks]\nenv_file = {:?}\n",
            env_file.display().to_string()
        ))
        .start();
    // FIFOs at every name a temp file could once be predicted at (kited's pid): opening one
    // for writing would wait for a reader that never comes.
    for name in [
        format!(".kite.env.kited-{}", daemon.pid()),
        format!(".kite.env.kited-{}", std::process::id()),
    ] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            env_dir.path().join(name),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .expect("mkfifo");
    }
    log_in_and_wait_for_env_file(&daemon, &sim, &env_file);
    // kited still answers (its one thread was not stuck on a FIFO).
    let pong = ask(daemon.socket_path(), &json!({"op": "ping"}));
    assert_eq!(pong.map(|p| p["ok"].clone()), Some(json!(true)));
}

#[test]
fn an_env_file_that_cannot_be_rewritten_shows_in_status_and_as_an_event() {
    let sim = sim();
    let outer = tempfile::tempdir().unwrap();
    let env_dir = outer.path().join("env");
    std::fs::create_dir(&env_dir).unwrap();
    let env_file = env_dir.join("kite.env");
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[hooks]\nenv_file = {:?}\n",
            env_file.display().to_string()
        ))
        .start();
    log_in_and_wait_for_env_file(&daemon, &sim, &env_file);
    // The directory goes away (a file now stands where it was): the logout cannot be written.
    std::fs::rename(&env_dir, outer.path().join("moved")).unwrap();
    std::fs::write(&env_dir, "not a directory").unwrap();
    let watch = daemon.connect_ipc();
    (&watch).write_all(b"{\"op\":\"watch\"}\n").unwrap();
    let mut events = BufReader::new(&watch);
    assert_eq!(next_answer(&mut events).unwrap()["ok"], json!(true));
    let out = daemon.ctl(&["logout"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let failed = loop {
        let event = next_answer(&mut events).expect("no env_file_failed event");
        if event["event"] == json!("env_file_failed") {
            break event;
        }
    };
    assert_eq!(
        failed["path"],
        json!(env_file.display().to_string()),
        "{failed}"
    );
    let status = daemon.request(&json!({"op": "status"}));
    let shown = status["status"]["env_file_error"]
        .as_str()
        .unwrap_or_default();
    assert!(shown.contains(&*env_file.to_string_lossy()), "{status}");
    let out = daemon.ctl(&["status"]);
    assert!(
        text(&out.stdout).contains("env file:"),
        "{}",
        text(&out.stdout)
    );
    // Once it can be written again, the error clears.
    std::fs::remove_file(&env_dir).unwrap();
    std::fs::create_dir(&env_dir).unwrap();
    daemon.signal(rustix::process::Signal::HUP);
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        let status = daemon.request(&json!({"op": "status"}));
        if status["status"].get("env_file_error").is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the error never cleared: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
