//! The `kite-sim` binary: it prints its environment line and stops on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use kite_proto::checksum::session_checksum;
use kite_tests::http_client::{self};

use crate::helper::{first_line, wait_child};

/// Where the binary is told to redirect logins (nothing listens there).
const CALLBACK: &str = "http://127.0.0.1:9/auth/callback";

#[test]
fn kite_sim_binary_prints_env_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kite-sim"))
        .args(["--listen", "127.0.0.1:0", "--redirect-url", CALLBACK])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = first_line(&mut child, "kite-sim", Duration::from_secs(10));
    let env: Vec<(&str, &str)> = line
        .trim()
        .strip_prefix("export ")
        .expect("an export line")
        .split(' ')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    let get = |k: &str| env.iter().find(|(key, _)| *key == k).unwrap().1;
    let root = get("KITE_API_ROOT");
    assert_eq!(get("KITE_LOGIN_URL"), format!("{root}/connect/login"));
    assert_eq!(get("KITE_API_KEY"), "kitedtestkey0001");
    assert_eq!(get("KITE_API_SECRET"), "simsecret-0123456789abcdef");

    let token = http_client::request("POST", &format!("{root}/_sim/request-token"), &[], b"")
        .unwrap()
        .json()["request_token"]
        .as_str()
        .unwrap()
        .to_string();
    let sum = session_checksum(get("KITE_API_KEY"), &token, get("KITE_API_SECRET"));
    let reply = http_client::post_form(
        &format!("{root}/session/token"),
        &[
            ("api_key", get("KITE_API_KEY")),
            ("request_token", &token),
            ("checksum", &sum),
        ],
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    let login = http_client::get(&format!(
        "{}?v=3&api_key={}",
        get("KITE_LOGIN_URL"),
        get("KITE_API_KEY")
    ))
    .unwrap();
    assert!(login.header("location").unwrap().starts_with(CALLBACK));

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = wait_child(&mut child, Duration::from_secs(5), "kite-sim after SIGTERM");
    assert!(status.success(), "{status}");
}
