//! kited and kitectl against local misuse that needs no second uid: clients that never read,
//! two daemons racing for one socket, a `--socket` given as a symlink, secrets in children's
//! environments and loose file modes.
//!
//! Every wait is a poll with a deadline; every process started here is owned by a guard.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kite_proto::checksum::postback_checksum;
use kite_tests::harness::{bin, eventually};
use kite_tests::Daemon;
use serde_json::Value;

use crate::helper::{login_headless, sim};

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

// ---------------------------------------------------------------------------------------------
// Two daemons, one socket
// ---------------------------------------------------------------------------------------------

/// Rounds of the race. Before the lock, about one run of fifteen rounds in two left two
/// daemons running; forty rounds (a few seconds) make a missed lock very likely to show.
const RACE_ROUNDS: usize = 40;
/// How long a kited may take to start, or to give up.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// Whether a daemon answers `ping` on `socket`.
fn answers_ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    if stream.write_all(b"{\"op\":\"ping\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    serde_json::from_str::<Value>(&line).is_ok_and(|v| v["ok"] == true)
}

#[test]
fn two_kiteds_started_at_once_on_a_stale_socket_leave_exactly_one() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("kited.sock");
    for round in 0..RACE_ROUNDS {
        // What a crashed kited leaves: a socket file nobody listens on.
        drop(UnixListener::bind(&socket).unwrap());
        let builder = Daemon::builder(&sim).socket(&socket);
        let mut pair = [builder.clone().spawn(), builder.spawn()];
        eventually(START_DEADLINE, "one of the two kiteds to give up", || {
            pair.iter_mut().any(|d| !d.is_running())
        });
        let [mut a, b] = pair;
        let (mut loser, mut winner) = if a.is_running() { (b, a) } else { (a, b) };
        let lost = loser
            .wait_exit(Duration::ZERO)
            .expect("the loser was reaped");
        assert!(!lost.success(), "round {round}: {lost}\n{}", loser.log());
        assert!(
            loser.log().contains("already listening"),
            "round {round}: the loser does not say why:\n{}",
            loser.log()
        );
        eventually(START_DEADLINE, "the winner to answer ping", || {
            answers_ping(&socket)
        });
        assert!(winner.is_running(), "round {round}:\n{}", winner.log());
        assert!(winner.terminate().success(), "{}", winner.log());
        assert!(
            !socket.exists(),
            "round {round}: the winner left its socket"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `--socket` given as a symlink
// ---------------------------------------------------------------------------------------------

/// `kitectl --socket SOCKET ARGS...` with private XDG dirs under `home`.
fn kitectl_at(home: &Path, socket: &Path, args: &[&str]) -> Output {
    Command::new(bin("kitectl"))
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run kitectl")
}

#[test]
fn kitectl_follows_its_own_link_to_the_socket_but_never_a_linked_dir() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let home = tempfile::tempdir().unwrap();
    let link = home.path().join("kited.sock");
    std::os::unix::fs::symlink(daemon.socket_path(), &link).unwrap();
    let out = kitectl_at(home.path(), &link, &["ping"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "kitectl refused the user's own link to the socket: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A link in place of the socket's directory is refused, even one to the right directory.
    let dir_link = home.path().join("linked-run");
    let real_dir = daemon.socket_path().parent().unwrap();
    std::os::unix::fs::symlink(real_dir, &dir_link).unwrap();
    let through_dir = dir_link.join(daemon.socket_path().file_name().unwrap());
    let out = kitectl_at(home.path(), &through_dir, &["ping"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kitectl went through a linked dir");
    assert!(stderr.contains("symbolic link"), "{stderr}");

    // A link someone else owns is refused (as root this test can make one).
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let out = kitectl_at(home.path(), &link, &["ping"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "kitectl followed another user's link"
        );
        assert!(stderr.contains("belongs to uid 65534"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets in children's environments
// ---------------------------------------------------------------------------------------------

#[test]
fn no_channel_token_reaches_a_notify_command() {
    let sim = sim();
    let files = tempfile::tempdir().unwrap();
    let env_dump = files.path().join("env");
    let secrets = [
        ("KITED_TELEGRAM_BOT_TOKEN", "4242:telegram-secret"),
        ("KITED_NTFY_TOKEN", "tk_ntfy-secret"),
        ("KITED_REDIS_PASSWORD", "redis-secret"),
    ];
    let mut builder = Daemon::builder(&sim).config_toml(&format!(
        "[notify]\ndesktop = false\ncommand = [\"sh\", \"-c\", \"env > {0}.tmp && mv {0}.tmp {0}\"]\n",
        env_dump.display()
    ));
    for (name, value) in secrets {
        builder = builder.env(name, value);
    }
    let daemon = builder.start();
    login_headless(&daemon);
    eventually(Duration::from_secs(15), "notify.command to run", || {
        env_dump.exists()
    });
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(env.contains("KITED_EVENT="), "{env}");
    for (name, value) in secrets {
        assert!(
            !env.contains(name) && !env.contains(value),
            "{name} reached notify.command:\n{env}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// kitectl setup and a config directory others can change
// ---------------------------------------------------------------------------------------------

#[test]
fn setup_refuses_a_config_dir_others_can_write_unless_forced() {
    use std::os::unix::fs::PermissionsExt;
    let home = crate::helper::setup::Home::new();
    std::fs::create_dir_all(home.kited_dir()).unwrap();
    std::fs::set_permissions(home.kited_dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let args = [
        "setup",
        "--no-systemd",
        "--api-key",
        "abcdef12",
        "--api-secret-file",
        "-",
    ];
    let out = home.run(&args, "a-secret\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(home.kited_dir().to_str().unwrap()) && stderr.contains("mode 0777"),
        "names the directory and its mode: {stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(
        !home.file("default.api-secret").exists(),
        "the secret was written"
    );
    assert!(
        !home.file("default.toml").exists(),
        "the config was written"
    );

    // With --force it writes, and makes the directory private.
    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    let out = home.run(&forced, "a-secret\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(home.kited_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    assert!(home.file("default.api-secret").exists());
}
