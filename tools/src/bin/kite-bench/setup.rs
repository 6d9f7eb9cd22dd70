//! Process setup: the release binaries next to kite-bench, a private runtime directory, the
//! simulator and a kited logged in through it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use kite_tests::harness::follow_browser_login;
use kite_tests::{Daemon, Sim, SimConfig};
use serde_json::json;

use crate::procfs::status_field;
use crate::{progress, COMMAND};

/// Without `KITED_BIN_DIR`, `kited` and `kitectl` must sit next to this executable.
pub fn require_binaries() -> Result<(), String> {
    if std::env::var_os("KITED_BIN_DIR").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("kite-bench has no directory")?;
    for name in ["kited", "kitectl"] {
        if !dir.join(name).is_file() {
            return Err(format!(
                "{} is missing: run `{COMMAND}` (or set KITED_BIN_DIR)",
                dir.join(name).display()
            ));
        }
    }
    Ok(())
}

/// A logged-in kited on a socket in a private runtime directory, and what the benchmarks
/// compare against.
pub struct Bench {
    pub daemon: Daemon,
    /// Kept alive for as long as the daemon talks to it.
    _sim: Sim,
    /// `$XDG_RUNTIME_DIR` and `$HOME` of the measured processes.
    pub runtime: tempfile::TempDir,
    pub socket: PathBuf,
    pub pid: u32,
    pub token: String,
    /// What `kitectl get-token` (and `cat` of the token file) print: the token and a newline.
    pub expected_stdout: Vec<u8>,
    /// kited's RSS in KiB right after the login.
    pub rss_after_login: u64,
}

impl Bench {
    pub fn start() -> Result<Bench, String> {
        // A private runtime dir, so kitectl finds the socket the default way
        // ($XDG_RUNTIME_DIR/kited/default.sock) and runs exactly as `kitectl get-token`.
        let runtime = tempfile::Builder::new()
            .prefix("kite-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        fs::set_permissions(runtime.path(), fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let socket = runtime.path().join("kited").join("default.sock");

        progress("starting kite-sim and kited");
        let sim = Sim::start(SimConfig::default());
        let daemon = Daemon::builder(&sim).socket(&socket).start();
        let pid = daemon.pid();

        progress("logging in through the simulator (browser flow)");
        let token = login(&daemon)?;
        let expected_stdout = format!("{token}\n").into_bytes();
        let rss_after_login = status_field(pid, "VmRSS").unwrap_or(0);
        Ok(Bench {
            daemon,
            _sim: sim,
            runtime,
            socket,
            pid,
            token,
            expected_stdout,
            rss_after_login,
        })
    }
}

/// Logs `daemon` in through the simulator's browser flow; returns the access token it serves.
pub fn login(daemon: &Daemon) -> Result<String, String> {
    let answer = daemon.request(&json!({"op": "login_url"}));
    let url = answer["login_url"]
        .as_str()
        .ok_or_else(|| format!("login_url failed: {answer}"))?;
    let (status, page) = follow_browser_login(daemon, url);
    if status != 200 {
        return Err(format!("login failed ({status}): {page}"));
    }
    let answer = daemon.request(&json!({"op": "get_token"}));
    answer["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("get_token failed: {answer}"))
}
