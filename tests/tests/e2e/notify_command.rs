//! The notify command hook and the env file: both follow the token, neither ever sees it where it should not.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use kite_tests::harness::{eventually, Daemon};
use serde_json::Value;

use crate::helper::events::{logout, scratch, script, WAIT};
use crate::helper::{login_headless, rfc3339, sim, status, toml_string};

/// Reads `DIR/EVENT.*` files written by the recording hook: (event, secret, stdin) each.
fn hook_records(dir: &Path, event: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{event}.")) && !name.ends_with(".tmp") {
            let text = fs::read_to_string(entry.path()).unwrap();
            let record = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            out.push(record);
        }
    }
    out
}

/// The hook: records each event in `DIR/EVENT.PID` (written whole, then renamed); on
/// `token_invalidated` it then hangs with a child, to be killed.
const HOOK: &str = r#"dir="$1"
f="$dir/$KITED_EVENT.$$"
{ echo "event=$KITED_EVENT"; echo "secret=${KITE_API_SECRET:+set}"; echo "stdin=$(cat)"; } > "$f.tmp"
mv "$f.tmp" "$f"
if [ "$KITED_EVENT" = token_invalidated ]; then
  sleep 600 &
  echo $! > "$dir/child.pid"
  echo $$ > "$dir/hook.pid"
  wait
fi
"#;

fn pid_alive(pid: i32) -> bool {
    // A zombie is dead: only its exit status is left for the parent to collect.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn notify_command_gets_the_event_never_the_token_and_is_killed_when_it_hangs() {
    let sim = sim();
    let files = scratch();
    let hook = script(&files.path().join("hook.sh"), HOOK);
    let out_dir = files.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\ncommand = [{}, {}]\n",
            toml_string(&hook.display().to_string()),
            toml_string(&out_dir.display().to_string())
        ))
        .env("KITED_COMMAND_TIMEOUT_MS", "1000")
        .start();
    let token = login_headless(&daemon);
    eventually(WAIT, "the hook to record token_new", || {
        !hook_records(&out_dir, "token_new").is_empty()
    });
    let records = hook_records(&out_dir, "token_new");
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["event"], "token_new");
    assert_eq!(
        record["secret"], "",
        "KITE_API_SECRET reached notify.command"
    );
    let event: Value = serde_json::from_str(&record["stdin"]).expect("stdin is one JSON line");
    assert_eq!(event["event"], "token_new");
    assert_eq!(event["user_id"], "AB1234");
    rfc3339(event["at"].as_str().unwrap());
    assert!(
        !record["stdin"].contains(&token),
        "the token reached notify.command"
    );

    // The hook hangs on token_invalidated, with a child of its own: both are killed after
    // KITED_COMMAND_TIMEOUT_MS.
    let hung_at = Instant::now();
    logout(&daemon);
    let read_pid = |name: &str| -> Option<i32> {
        fs::read_to_string(out_dir.join(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    eventually(WAIT, "the hook to hang", || {
        read_pid("hook.pid").is_some() && read_pid("child.pid").is_some()
    });
    let (hook_pid, child_pid) = (
        read_pid("hook.pid").unwrap(),
        read_pid("child.pid").unwrap(),
    );
    eventually(WAIT, "the hung hook and its child to be killed", || {
        !pid_alive(hook_pid) && !pid_alive(child_pid)
    });
    let took = hung_at.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "killed after {took:?}"
    );
    assert!(daemon.log().contains("ran over"), "{}", daemon.log());
    // The daemon carries on.
    assert_eq!(daemon.ctl(&["ping"]).status.code(), Some(0));
}

/// On `token_new` the hook takes 1.5 s and then leaves `token_new.done`; on `token_invalidated`
/// it hangs with a child of its own.
const SLOW_HOOK: &str = r#"dir="$1"
case "$KITED_EVENT" in
token_new)
  sleep 1.5
  echo done > "$dir/token_new.done" ;;
token_invalidated)
  sleep 600 &
  echo $! > "$dir/child.pid"
  echo $$ > "$dir/hook.pid"
  wait ;;
esac
"#;

#[test]
fn a_stop_lets_a_quick_delivery_finish_and_abandons_a_hung_one_by_name() {
    let sim = sim();
    let files = scratch();
    let hook = script(&files.path().join("hook.sh"), SLOW_HOOK);
    let out_dir = files.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let mut daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\ncommand = [{}, {}]\n",
            toml_string(&hook.display().to_string()),
            toml_string(&out_dir.display().to_string())
        ))
        // Far beyond the test: only the stop ends the hung hook.
        .env("KITED_COMMAND_TIMEOUT_MS", "600000")
        .start();
    login_headless(&daemon);
    logout(&daemon);
    let read_pid = |name: &str| -> Option<i32> {
        fs::read_to_string(out_dir.join(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    };
    eventually(WAIT, "the token_invalidated hook to hang", || {
        read_pid("hook.pid").is_some() && read_pid("child.pid").is_some()
    });
    let (hook_pid, child_pid) = (
        read_pid("hook.pid").unwrap(),
        read_pid("child.pid").unwrap(),
    );
    assert!(
        !out_dir.join("token_new.done").exists(),
        "the token_new hook is still running when the stop begins"
    );
    let stopping = Instant::now();
    assert!(daemon.terminate().success(), "{}", daemon.log());
    let took = stopping.elapsed();
    // The hung hook holds the stop for the grace (2 s), no longer.
    assert!(took < Duration::from_secs(6), "the stop took {took:?}");
    assert!(
        out_dir.join("token_new.done").exists(),
        "the quick delivery was cut short: {}",
        daemon.log()
    );
    let log = daemon.log();
    let abandoned = log
        .lines()
        .find(|l| l.contains("abandoned what was still in flight"))
        .unwrap_or_else(|| panic!("no line names the abandoned deliveries: {log}"));
    assert!(
        abandoned.contains("notify.command for token_invalidated")
            && !abandoned.contains("token_new"),
        "{abandoned}"
    );
    assert!(
        log.contains("the delivery in flight finished first"),
        "{log}"
    );
    eventually(
        WAIT,
        "the abandoned hook and its child to be killed",
        || !pid_alive(hook_pid) && !pid_alive(child_pid),
    );
}

// 6. hooks.env_file

fn env_map(path: &Path) -> HashMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_file_follows_the_token_privately() {
    let sim = sim();
    let files = scratch();
    let env_file = files.path().join("kite.env");
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "[hooks]\nenv_file = {}\n",
            toml_string(&env_file.display().to_string())
        ))
        .start();
    let token = login_headless(&daemon);
    let expires_at = status(&daemon).expires_at.expect("a token has an expiry");
    eventually(WAIT, "the env file to hold the token", || {
        env_map(&env_file).get("KITE_ACCESS_TOKEN") == Some(&token)
    });
    let env = env_map(&env_file);
    assert_eq!(env["KITE_API_KEY"], sim.api_key());
    assert_eq!(env["KITE_TOKEN_EXPIRES_AT"], expires_at);
    let mode = fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "env file mode {mode:o}");
    // Rewritten atomically: no temp files left beside it.
    let names: Vec<_> = fs::read_dir(files.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("kite.env")]);

    logout(&daemon);
    eventually(WAIT, "the env file to drop the token", || {
        env_map(&env_file)
            .get("KITE_ACCESS_TOKEN")
            .map(String::as_str)
            == Some("")
    });
    let env = env_map(&env_file);
    assert_eq!(env["KITE_TOKEN_EXPIRES_AT"], "");
    assert!(!fs::read_to_string(&env_file).unwrap().contains(&token));
    let mode = fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "env file mode {mode:o}");
}

// 7. the account guard
