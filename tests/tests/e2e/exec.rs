//! `kitectl exec --on-new-token restart|signal:NAME`, end to end: the real kitectl supervises a
//! small shell "bot" that logs each start (pid, time, the token in its environment) and each
//! signal it catches to a file; the tests log in through the simulator and read that file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kite_tests::harness::{bin, eventually, Daemon};
use rustix::process::{kill_process, kill_process_group, test_kill_process, Pid, Signal};
use serde_json::json;

use crate::helper::{login_headless, rfc3339, sim, wait_child};

/// How long anything that should happen promptly may take on a busy machine.
const WAIT: Duration = Duration::from_secs(15);

/// The bot's common part: `$BOT_LOG` gets a `start PID NANOS TOKEN` line, then the bot idles
/// (a trapped signal interrupts `wait` at once). `TRAPS` is replaced by each bot's traps.
const BOT: &str = r#"#!/bin/sh
log="$BOT_LOG"
now() { date +%s%N; }
TRAPS
echo "start $$ $(now) $KITE_ACCESS_TOKEN" >> "$log"
BODY
while :; do sleep 1 & wait $!; done
"#;

/// Exits on SIGTERM, saying so.
const POLITE: &str = r#"trap 'echo "term $$ $(now)" >> "$log"; exit 0' TERM"#;
/// Says it got SIGTERM, and carries on.
const STUBBORN: &str = r#"trap 'echo "term $$ $(now)" >> "$log"' TERM"#;
/// On SIGUSR1 re-reads the token with `kitectl get-token`, as a real bot would.
const REREADS_ON_USR1: &str = r#"trap 'echo "term $$ $(now)" >> "$log"; exit 0' TERM
trap 'echo "usr1 $$ $(now) $("$KITECTL" get-token)" >> "$log"' USR1"#;
/// Exits 5 on SIGTERM.
const TERM_EXITS_5: &str = r#"trap 'echo "term $$ $(now)" >> "$log"; exit 5' TERM"#;

/// One line of the bot's log.
#[derive(Debug, Clone)]
struct Line {
    what: String,
    pid: i32,
    nanos: u128,
    token: Option<String>,
}

/// A `kitectl exec --on-new-token ...` process and the bot's files. Dropping it stops kitectl
/// (SIGTERM, then SIGKILL) and SIGKILLs every process group a bot ever led.
struct Supervised {
    kitectl: Child,
    log: PathBuf,
    stderr: PathBuf,
    /// Removed (with the bot and its log) when the test ends.
    _dir: tempfile::TempDir,
}

impl Supervised {
    /// Starts kitectl with `args` (before `--`), supervising a bot with `traps` and `body`.
    fn start(
        daemon: &Daemon,
        args: &[&str],
        traps: &str,
        body: &str,
        envs: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kited-exec-")
            .tempdir()
            .unwrap();
        let script = dir.path().join("bot.sh");
        fs::write(&script, BOT.replace("TRAPS", traps).replace("BODY", body)).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("bot.log");
        let stderr = dir.path().join("kitectl.stderr");
        let mut all: Vec<&str> = vec!["exec"];
        all.extend_from_slice(args);
        all.push("--");
        let script_arg = script.display().to_string();
        all.push(&script_arg);
        let mut cmd = daemon.ctl_command(&all);
        cmd.env("BOT_LOG", &log)
            .env("KITECTL", bin("kitectl"))
            .env("KITED_SOCKET", daemon.socket_path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(&stderr).unwrap()));
        for (key, value) in envs {
            cmd.env(key, value);
        }
        let kitectl = cmd.spawn().expect("cannot start kitectl exec");
        Supervised {
            kitectl,
            log,
            stderr,
            _dir: dir,
        }
    }

    fn lines(&self) -> Vec<Line> {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let mut words = line.split_whitespace();
                let mut next = || {
                    words
                        .next()
                        .unwrap_or_else(|| panic!("short line {line:?}"))
                };
                Line {
                    what: next().to_string(),
                    pid: next().parse().unwrap(),
                    nanos: next().parse().unwrap(),
                    token: words.next().map(str::to_string),
                }
            })
            .collect()
    }

    fn kinds(&self) -> Vec<String> {
        self.lines().into_iter().map(|l| l.what).collect()
    }

    /// Waits until the bot's log has a line matching `check`, and returns it.
    fn wait_line(&self, what: &str, check: impl Fn(&Line) -> bool) -> Line {
        let mut found = None;
        eventually(WAIT, what, || {
            found = self.lines().into_iter().find(|l| check(l));
            found.is_some()
        });
        found.unwrap()
    }

    /// Waits for the start of a bot holding `token`.
    fn wait_start(&self, token: &str) -> Line {
        self.wait_line(&format!("a bot started with token {token}"), |l| {
            l.what == "start" && l.token.as_deref() == Some(token)
        })
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill_process(pid(self.kitectl.id() as i32), signal).expect("cannot signal kitectl");
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        wait_child(&mut self.kitectl, WAIT, "kitectl exec")
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if matches!(self.kitectl.try_wait(), Ok(None)) {
            let _ = kill_process(pid(self.kitectl.id() as i32), Signal::TERM);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(self.kitectl.try_wait(), Ok(None))
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.kitectl.kill();
            let _ = self.kitectl.wait();
        }
        for line in self.lines() {
            let _ = kill_process_group(pid(line.pid), Signal::KILL);
        }
    }
}

fn pid(raw: i32) -> Pid {
    Pid::from_raw(raw).expect("pid 0")
}

fn alive(raw: i32) -> bool {
    test_kill_process(pid(raw)).is_ok()
}

fn nanos_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Milliseconds from `from` (ns since the epoch) to `to`.
fn ms_between(from: u128, to: u128) -> f64 {
    (to as f64 - from as f64) / 1e6
}

fn logout(daemon: &Daemon) {
    let answer = daemon.request(&json!({"op": "logout"}));
    assert_eq!(answer["ok"], true, "logout failed: {answer}");
}

/// Waits until `watch` has been subscribed by the supervisor: its first bot has started (the
/// subscription comes before the token and the bot).
fn first_start(bot: &Supervised, token: &str) -> Line {
    bot.wait_start(token)
}

#[test]
fn restart_mode_restarts_the_bot_with_the_new_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let a = login_headless(&daemon);
    let bot = Supervised::start(&daemon, &["--on-new-token", "restart"], POLITE, "", &[]);
    let first = first_start(&bot, &a);

    let before_login = nanos_now();
    let b = login_headless(&daemon);
    let answered = nanos_now();
    let second = bot.wait_start(&b);
    assert_ne!(second.pid, first.pid, "a new process");
    let term = bot.wait_line("the old bot's SIGTERM", |l| l.what == "term");
    assert_eq!(term.pid, first.pid, "{:?}", bot.lines());
    assert!(
        term.nanos <= second.nanos,
        "stopped before the new one started"
    );
    assert_eq!(bot.kinds(), ["start", "term", "start"], "{:?}", bot.lines());
    eventually(WAIT, "the old bot to be gone", || !alive(first.pid));
    assert!(alive(second.pid));
    eprintln!(
        "measured: login answered -> restarted bot running: {:.1} ms ({:.1} ms from the \
         exchange request)",
        ms_between(answered, second.nanos),
        ms_between(before_login, second.nanos)
    );
    let stderr = bot.stderr();
    assert!(stderr.contains("new token: restarting"), "{stderr}");
    for token in [&a, &b] {
        assert!(
            !stderr.contains(token.as_str()),
            "kitectl printed a token: {stderr}"
        );
    }
}

#[test]
fn signal_mode_signals_the_bot_which_rereads_the_token() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let a = login_headless(&daemon);
    let bot = Supervised::start(
        &daemon,
        &["--on-new-token", "signal:usr1"],
        REREADS_ON_USR1,
        "",
        &[],
    );
    let first = first_start(&bot, &a);
    let b = login_headless(&daemon);
    let usr1 = bot.wait_line("SIGUSR1 to the bot", |l| l.what == "usr1");
    assert_eq!(usr1.pid, first.pid, "the same bot, not a new one");
    assert_eq!(usr1.token.as_deref(), Some(b.as_str()), "it re-read B");
    let c = login_headless(&daemon);
    bot.wait_line("a second SIGUSR1", |l| {
        l.what == "usr1" && l.token.as_deref() == Some(c.as_str())
    });
    assert_eq!(bot.kinds(), ["start", "usr1", "usr1"], "{:?}", bot.lines());
    assert!(alive(first.pid));
    assert!(bot.stderr().contains("sending SIGUSR1"), "{}", bot.stderr());
}

/// The fake clock's cutoff for these tests, and the sim's first login time (before it).
const CUTOFF: &str = "2026-11-24T06:00:00+05:30";

#[test]
fn expiry_invalidation_and_logout_leave_the_bot_running() {
    let sim = sim();
    sim.set_login_time(Some("2026-11-23 09:00:00".into()));
    let fake_now = (rfc3339(CUTOFF) - chrono::Duration::seconds(3)).to_rfc3339();
    let daemon = Daemon::builder(&sim)
        .config_toml("[expiry]\nverify_every = \"1s\"\n")
        .env("KITED_FAKE_NOW", &fake_now)
        .start();
    let a = login_headless(&daemon);
    let bot = Supervised::start(&daemon, &["--on-new-token", "restart"], POLITE, "", &[]);
    let first = first_start(&bot, &a);
    // The cutoff passes: token_expired.
    eventually(WAIT, "the token to expire", || {
        daemon.ctl(&["get-token"]).status.code() == Some(4)
    });
    // Logins after the cutoff: the next day's token.
    sim.set_login_time(Some("2026-11-24 06:00:30".into()));
    let b = login_headless(&daemon);
    let second = bot.wait_start(&b);
    // Logout (token_invalidated), then Kite killing the next token: neither touches the bot.
    logout(&daemon);
    let c = login_headless(&daemon);
    let third = bot.wait_start(&c);
    sim.kill_access_token(&c);
    eventually(
        WAIT,
        "the periodic check to invalidate the killed token",
        || daemon.ctl(&["get-token"]).status.code() == Some(4),
    );
    let d = login_headless(&daemon);
    bot.wait_start(&d);
    // Exactly one stop per login: the expiry and the logout in between stopped nothing.
    assert_eq!(
        bot.kinds(),
        ["start", "term", "start", "term", "start", "term", "start"],
        "{:?}",
        bot.lines()
    );
    let pids: Vec<i32> = bot.lines().iter().map(|l| l.pid).collect();
    assert_eq!(pids[..2], [first.pid, first.pid]);
    assert_eq!(pids[2..4], [second.pid, second.pid]);
    assert_eq!(pids[4..6], [third.pid, third.pid]);
}

#[test]
fn exit_status_passes_through_and_signals_reach_the_bot() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let a = login_headless(&daemon);

    let mut bot = Supervised::start(&daemon, &["--on-new-token", "restart"], "", "exit 7", &[]);
    assert_eq!(bot.wait_exit().code(), Some(7), "{}", bot.stderr());
    bot.wait_start(&a);

    let mut bot = Supervised::start(
        &daemon,
        &["--on-new-token", "signal:HUP"],
        TERM_EXITS_5,
        "",
        &[],
    );
    let first = first_start(&bot, &a);
    bot.signal(Signal::TERM);
    assert_eq!(bot.wait_exit().code(), Some(5), "{}", bot.stderr());
    let term = bot.wait_line("the bot's SIGTERM", |l| l.what == "term");
    assert_eq!(term.pid, first.pid);

    // A bot killed by the signal: 128 + SIGINT, as a shell reports it.
    let mut bot = Supervised::start(&daemon, &["--on-new-token", "restart"], "", "", &[]);
    let first = first_start(&bot, &a);
    bot.signal(Signal::INT);
    assert_eq!(bot.wait_exit().code(), Some(130), "{}", bot.stderr());
    eventually(WAIT, "the bot to be gone", || !alive(first.pid));
}

#[test]
fn a_login_while_kited_restarts_reaches_the_bot_after_the_reconnect() {
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let a = login_headless(&daemon);
    let bot = Supervised::start(&daemon, &["--on-new-token", "restart"], POLITE, "", &[]);
    let first = first_start(&bot, &a);
    daemon.terminate();
    eventually(WAIT, "kitectl to notice kited went away", || {
        bot.stderr().contains("lost the connection to kited")
    });
    assert!(alive(first.pid), "the bot keeps running without kited");
    daemon.restart();
    let started = nanos_now();
    let b = login_headless(&daemon);
    let second = bot.wait_start(&b);
    eprintln!(
        "measured: kited back and logged in -> restarted bot running: {:.1} ms",
        ms_between(started, second.nanos)
    );
    assert_eq!(bot.kinds(), ["start", "term", "start"], "{:?}", bot.lines());
    eventually(WAIT, "kitectl to say it reconnected", || {
        bot.stderr().contains("reconnected to kited")
    });
    // And it follows the new daemon's events from then on.
    let c = login_headless(&daemon);
    bot.wait_start(&c);
}

#[test]
fn bad_actions_are_usage_errors_and_start_nothing() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    login_headless(&daemon);
    for action in ["reboot", "signal:NOPE", "signal:", ""] {
        let mut bot = Supervised::start(&daemon, &["--on-new-token", action], "", "", &[]);
        let status = bot.wait_exit();
        assert_eq!(status.code(), Some(2), "{action:?}: {}", bot.stderr());
        let stderr = bot.stderr();
        assert_eq!(stderr.lines().count(), 1, "{action:?}: {stderr}");
        assert!(stderr.starts_with("kitectl: "), "{stderr}");
        assert!(!bot.log.exists(), "{action:?}: the bot ran");
    }
}

#[test]
fn without_a_token_it_exits_4_or_waits_for_one() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let mut bot = Supervised::start(&daemon, &["--on-new-token", "restart"], "", "", &[]);
    assert_eq!(bot.wait_exit().code(), Some(4), "{}", bot.stderr());
    assert!(!bot.log.exists());

    let bot = Supervised::start(
        &daemon,
        &["--on-new-token", "restart", "--wait", "30"],
        POLITE,
        "",
        &[],
    );
    let a = login_headless(&daemon);
    bot.wait_start(&a);
    let b = login_headless(&daemon);
    bot.wait_start(&b);
    assert_eq!(bot.kinds(), ["start", "term", "start"], "{:?}", bot.lines());
}

#[test]
fn a_bot_ignoring_sigterm_is_killed_after_the_grace_period() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let a = login_headless(&daemon);
    let grace_ms = 400;
    let bot = Supervised::start(
        &daemon,
        &["--on-new-token", "restart"],
        STUBBORN,
        "",
        &[("KITECTL_RESTART_GRACE_MS", &grace_ms.to_string())],
    );
    let first = first_start(&bot, &a);
    let b = login_headless(&daemon);
    let second = bot.wait_start(&b);
    let term = bot.wait_line("the ignored SIGTERM", |l| l.what == "term");
    assert_eq!(term.pid, first.pid);
    assert!(
        ms_between(term.nanos, second.nanos) >= f64::from(grace_ms) * 0.9,
        "the new bot started {:.0} ms after SIGTERM, before the grace ran out",
        ms_between(term.nanos, second.nanos)
    );
    eventually(WAIT, "the stubborn bot to be killed", || !alive(first.pid));
    assert!(bot.stderr().contains("killing it"), "{}", bot.stderr());
}
