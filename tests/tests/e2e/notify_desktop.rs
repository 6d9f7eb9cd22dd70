//! Desktop notifications over a real D-Bus session bus, and the log-in button.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kite_tests::harness::{eventually, Daemon};
use serde_json::Value;

use crate::helper::events::{
    before_cutoff, kill_child, logout, scratch, script, Bus, Watch, LOGIN_TIME, WAIT,
};
use crate::helper::{first_line, get_token, login_headless, sim, toml_string};

/// A python3 that has dbus-python and GLib (Debian: python3-dbus, python3-gi).
fn dbus_python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args([
                "-c",
                "import dbus, dbus.service, dbus.mainloop.glib; from gi.repository import GLib",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return PathBuf::from(candidate);
        }
    }
    panic!(
        "no python3 with dbus-python and GLib bindings: `apt-get install python3-dbus python3-gi`"
    );
}

/// `tests/dbus/notification_server.py` on a [`Bus`], recording Notify calls.
struct Notifications {
    child: Child,
    log: PathBuf,
    address: String,
}

impl Notifications {
    fn start(bus: &Bus, hang: bool) -> Notifications {
        let script = Notifications::script();
        let log = bus
            .dir
            .path()
            .join(if hang { "hung.jsonl" } else { "notify.jsonl" });
        let mut command = Command::new(dbus_python());
        command
            .arg(&script)
            .arg("--log")
            .arg(&log)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if hang {
            command.arg("--hang");
        }
        let mut child = command
            .spawn()
            .expect("cannot start the notification server");
        let ready = first_line(&mut child, "notification_server.py", WAIT);
        assert_eq!(ready, "ready");
        Notifications {
            child,
            log,
            address: bus.address.clone(),
        }
    }

    /// Every Notify call so far.
    fn calls(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("summary").is_some())
            .collect()
    }

    fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        eventually(WAIT, what, || {
            found = self.calls().into_iter().find(|c| check(c));
            found.is_some()
        });
        found.unwrap()
    }

    /// A click on the notification's button `key`.
    fn invoke(&self, id: u64, key: &str) {
        let status = Command::new(dbus_python())
            .arg(Self::script())
            .arg("--invoke")
            .arg(id.to_string())
            .arg(key)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .stdout(Stdio::null())
            .status()
            .expect("cannot run notification_server.py --invoke");
        assert!(status.success(), "notification_server.py --invoke failed");
    }

    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/notification_server.py")
    }
}

impl Drop for Notifications {
    fn drop(&mut self) {
        kill_child(&mut self.child);
    }
}

/// A fake `xdg-open` that records its arguments (and whether it saw the api secret).
fn fake_opener(dir: &Path) -> (PathBuf, PathBuf) {
    let record = dir.join("opened");
    let opener = script(
        &dir.join("fake-open"),
        &format!(
            "{{ echo \"secret=${{KITE_API_SECRET:+set}}\"; for a in \"$@\"; do echo \"arg=$a\"; done; }} > {0}.tmp\nmv {0}.tmp {0}\n",
            record.display()
        ),
    );
    (opener, record)
}

#[test]
fn desktop_notifications_and_the_log_in_button() {
    let bus = Bus::start();
    let server = Notifications::start(&bus, false);
    let files = scratch();
    let (opener, opened) = fake_opener(files.path());
    let sim = sim();
    sim.set_login_time(Some(LOGIN_TIME.into()));
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[expiry]\nwarn_before = [\"15m\"]\n[notify]\nopen_command = [{}]\n",
            toml_string(&opener.display().to_string())
        ))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("KITED_FAKE_NOW", &before_cutoff(15 * 60 + 3))
        .start();
    let mut watch = Watch::socket(&daemon);

    login_headless(&daemon);
    let new = server.wait_for("a Logged in notification", |c| {
        c["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("Logged in as Kite Tester"))
    });
    assert_eq!(new["app_name"], "kited", "{new}");
    assert_eq!(
        new["summary"], "Logged in as Kite Tester until 06:00 today",
        "{new}"
    );

    watch.expect("token_expiring");
    let warning = server.wait_for("the expiry warning", |c| {
        c["summary"] == "Kite token expires in 15 minutes"
    });
    let actions: Vec<&str> = warning["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        actions.chunks(2).any(|pair| pair == ["login", "Log in"]),
        "{warning}"
    );

    // Click "Log in". kited listens for the click only once Notify has returned (notify-rust
    // subscribes after showing), so a click in that instant would be lost, as it would be on a
    // real desktop; the test clicks again until the opener runs.
    let id = warning["id"].as_u64().unwrap();
    let deadline = Instant::now() + WAIT;
    while !opened.exists() {
        assert!(
            Instant::now() < deadline,
            "the opener never ran; log:\n{}",
            daemon.log()
        );
        server.invoke(id, "login");
        let until = Instant::now() + Duration::from_millis(500);
        while !opened.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let record = fs::read_to_string(&opened).unwrap();
    assert!(
        record.contains("secret=\n"),
        "the opener saw KITE_API_SECRET: {record}"
    );
    let args: Vec<&str> = record
        .lines()
        .filter_map(|l| l.strip_prefix("arg="))
        .collect();
    assert_eq!(args.len(), 1, "{record}");
    let url = url::Url::parse(args[0]).unwrap();
    assert!(args[0].starts_with(&sim.login_url()), "{url}");
    let query: HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("api_key"), Some(&sim.api_key()), "{url}");
    assert_eq!(query.get("v").map(String::as_str), Some("3"), "{url}");
    assert!(
        query
            .get("redirect_params")
            .is_some_and(|p| p.starts_with("state=")),
        "{url}"
    );
}

/// A `notify.command` hook that touches a file named after each event in `files`; the TOML
/// value of `command` that runs it.
fn event_marker_hook(files: &Path) -> String {
    let hook = script(
        &files.join("hook.sh"),
        &format!("touch {}/$KITED_EVENT\n", files.display()),
    );
    format!("[{}]", toml_string(&hook.display().to_string()))
}

#[test]
fn no_session_bus_is_one_warning_and_the_daemon_carries_on() {
    let sim = sim();
    let files = scratch();
    let hook = event_marker_hook(files.path());
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!("[notify]\ncommand = {hook}\n"))
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            &format!("unix:path={}/no-bus", files.path().display()),
        )
        .env("RUST_LOG", "info,kited=debug")
        .start();
    login_headless(&daemon);
    logout(&daemon);
    // Two desktop notifications were tried and failed (the second at debug level).
    eventually(WAIT, "both notifications to be tried", || {
        daemon.log().contains("desktop notification not shown")
    });
    let log = daemon.log();
    let warnings = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("desktop notifications unavailable"))
        .count();
    assert_eq!(warnings, 1, "{log}");
    eventually(WAIT, "notify.command to run anyway", || {
        files.path().join("token_invalidated").exists()
    });
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
    login_headless(&daemon);
}

#[test]
fn a_notification_server_that_never_answers_wedges_nothing() {
    let bus = Bus::start();
    let server = Notifications::start(&bus, true);
    let sim = sim();
    let daemon = Daemon::builder(&sim)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let token = login_headless(&daemon);
    server.wait_for("the unanswered Notify", |c| c["answered"] == false);
    // While the Notify is pending, the socket answers at once, again and again.
    let pending_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < pending_until {
        let started = Instant::now();
        let out = daemon.ctl(&["ping"]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(took < Duration::from_secs(1), "ping took {took:?}");
        assert_eq!(get_token(&daemon), token);
    }
    // More events are not held up behind the pending one.
    logout(&daemon);
    login_headless(&daemon);
    // And the pending call is given up on (notify's D-Bus timeout is 5 s).
    eventually(WAIT, "the notification timeout warning", || {
        daemon.log().contains("did not answer within")
    });
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
}

#[test]
fn desktop_false_sends_no_notifications() {
    let bus = Bus::start();
    let server = Notifications::start(&bus, false);
    let sim = sim();
    let files = scratch();
    let hook = event_marker_hook(files.path());
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!("[notify]\ndesktop = false\ncommand = {hook}\n"))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    login_headless(&daemon);
    logout(&daemon);
    // The notifier handles events in order, starting the command and the desktop notification
    // for each together; once the command for the last event has run, a desktop notification
    // would have been sent within milliseconds. No event can prove a notification was rightly
    // not sent, so this then allows a bounded 500 ms for one to arrive.
    eventually(WAIT, "notify.command for the logout", || {
        files.path().join("token_invalidated").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.calls(), Vec::<Value>::new());
}

// 11. get-token --wait
