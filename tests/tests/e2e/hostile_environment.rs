//! Hostile surroundings: a vanished log reader, a full disk, half-closed clients, FIFOs and an unwritable env file.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kite_tests::harness::bin;
use kite_tests::http_client::{self};
use kite_tests::{Daemon, Sim};
use serde_json::{json, Value};

use crate::helper::uid::{ask, next_answer, require_root, Running, PROCESS_DEADLINE};
use crate::helper::{exchange_calls, sim, text};

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

// 4. A full disk is survivable

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

// 9. A half-closed client still gets its answer; 10. a repeated key is a bad request

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
