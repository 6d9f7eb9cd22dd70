//! Fixtures the end-to-end tests share: a simulator, the ways to log in, and the typed IPC
//! questions (`get_token`, `status`) most tests ask, and waits on child processes. Each test
//! module keeps only what is its own. The submodules are named by what they drive: `ctl`
//! (kitectl), `socket` (kited's socket by hand), `http` (kited's HTTP API), `uid` (a second
//! local user), `events`, `systemd`, `setup`, `kite_login` (the simulator's login page).

pub mod ctl;
pub mod events;
pub mod files;
pub mod http;
pub mod ip_echo;
pub mod kite_login;
pub mod phone;
mod process;
pub mod setup;
pub mod socket;
pub mod systemd;
pub mod uid;
mod web;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{DateTime, FixedOffset};
use kite_proto::message::{Exchange, GetToken, LoginUrl, Status};
use kite_proto::TokenStatus;
use kite_tests::{follow_browser_login, Daemon, Sim, SimConfig};
use serde_json::Value;

pub use process::{first_line, read_outputs, wait_child, ChildGuard};
pub use web::{
    ctl_token, exchange_calls, fresh_states, get, get_json, web_config, web_daemon,
    web_daemon_with_origin,
};

/// A simulator with the default app, user and secrets.
pub fn sim() -> Sim {
    Sim::start(SimConfig::default())
}

/// What a browser login left behind.
pub struct LoggedIn {
    /// The access token the simulator issued for it.
    pub token: String,
    /// The callback page kited showed.
    pub page: String,
}

/// The whole browser login: the `login_url` op, the simulator's login page and 302, kited's
/// callback. Asserts the callback page is a success naming the user.
pub fn browser_login(daemon: &Daemon) -> LoggedIn {
    let sim = daemon.sim();
    let before = sim.valid_access_tokens();
    let (login_url, _) = login_urls(daemon);
    let (status, page) = follow_browser_login(daemon, &login_url);
    assert_eq!(
        status,
        200,
        "callback page: {page}\n--- kited log:\n{}",
        daemon.log()
    );
    assert!(
        page.contains("Logged in as Kite Tester"),
        "callback page should say who logged in: {page}"
    );
    LoggedIn {
        token: the_new_token(sim, &before),
        page,
    }
}

/// Logs in without a browser: a request token as a human login makes it, exchanged over the
/// socket. Returns the access token the simulator issued.
pub fn login_headless(daemon: &Daemon) -> String {
    let sim = daemon.sim();
    let before = sim.valid_access_tokens();
    let exchange = Exchange {
        request_token: Some(sim.issue_request_token()),
        callback_url: None,
    };
    if let Err(e) = daemon.call(exchange) {
        panic!("exchange failed: {e:?}");
    }
    the_new_token(sim, &before)
}

/// The `login_url` op's answer: (Kite's login URL, kited's callback URL).
pub fn login_urls(daemon: &Daemon) -> (String, String) {
    let urls = daemon
        .call(LoginUrl {})
        .unwrap_or_else(|e| panic!("login_url: {e:?}"));
    (urls.login_url, urls.callback_url)
}

/// The token `get_token` serves now, if any.
pub fn served_token(daemon: &Daemon) -> Option<String> {
    daemon
        .call(GetToken::default())
        .ok()
        .map(|issued| issued.access_token)
}

/// The token `get_token` serves; panics with the daemon's error when there is none.
pub fn get_token(daemon: &Daemon) -> String {
    daemon
        .call(GetToken::default())
        .unwrap_or_else(|e| panic!("get_token failed: {e:?}"))
        .access_token
}

/// The `status` op's answer.
pub fn status(daemon: &Daemon) -> TokenStatus {
    daemon
        .call(Status {})
        .unwrap_or_else(|e| panic!("status failed: {e:?}"))
        .status
}

/// Access tokens the simulator accepts now that were not in `before`.
pub fn new_tokens(sim: &Sim, before: &[String]) -> Vec<String> {
    let before: BTreeSet<&String> = before.iter().collect();
    sim.valid_access_tokens()
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect()
}

/// The exactly-one access token the simulator issued since `before`.
pub fn the_new_token(sim: &Sim, before: &[String]) -> String {
    let new = new_tokens(sim, before);
    assert_eq!(
        new.len(),
        1,
        "expected the sim to issue exactly one token: {new:?}"
    );
    new.into_iter().next().unwrap()
}

/// A query parameter of an absolute URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The `state` a login URL carries inside `redirect_params`.
pub fn login_state(login_url: &str) -> String {
    let params = query_param(login_url, "redirect_params")
        .unwrap_or_else(|| panic!("login URL has no redirect_params: {login_url}"));
    url::form_urlencoded::parse(params.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("redirect_params carry no state: {params:?}"))
}

/// An RFC 3339 time; panics naming the text when it is not one.
pub fn rfc3339(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

/// [`rfc3339`] of a JSON string field.
pub fn rfc3339_json(value: &Value) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    rfc3339(text)
}

/// `text` as a TOML basic string (a JSON string is one), for paths in generated configs.
pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// The permission bits of a file, directory or socket (not following a symlink).
pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Bytes a process wrote, as text (invalid UTF-8 replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the daemon itself printed (the harness's own `--- harness:` lines and blank lines left
/// out).
pub fn daemon_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.starts_with("--- harness") && !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}
