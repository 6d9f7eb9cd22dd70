//! The README's first command, `kite-demo`, end to end: it prints a page and kitectl commands,
//! a login through the page's API and the simulated Kite works, the printed kitectl command gets
//! the token, and Ctrl-C leaves nothing running and nothing on disk.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kite_tests::harness::{bin, eventually};
use kite_tests::http_client;
use serde_json::Value;

/// kite-demo builds nothing here (KITED_BIN_DIR is set); it starts a sim and a kited.
const GUIDE_DEADLINE: Duration = Duration::from_secs(30);
/// Ctrl-C to exit: SIGTERM to kited, which stops at once.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// kite-demo as a child; killed (with its process group) if the test fails half-way.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(tmp: &Path) -> Demo {
        let kited = bin("kited");
        let mut child = Command::new(bin("kite-demo"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", tmp)
            .env("TMPDIR", tmp)
            .env("KITED_BIN_DIR", kited.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start kite-demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads the guide up to its last line.
    fn read_guide(&mut self) -> String {
        let deadline = std::time::Instant::now() + GUIDE_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("Ctrl-C");
                    self.seen.push(line);
                    if done {
                        return self.seen.join("\n");
                    }
                }
                Err(_) => panic!(
                    "no complete guide within {GUIDE_DEADLINE:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn interrupt(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The word after `marker` in `text`.
fn word_after<'t>(text: &'t str, marker: &str) -> &'t str {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in:\n{text}"));
    text[at + marker.len()..].split_whitespace().next().unwrap()
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

#[test]
fn demo_gives_a_token_with_one_click_and_cleans_up_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(tmp.path());
    let guide = demo.read_guide();
    let page = word_after(&guide, "Open ").to_string();
    assert!(
        page.starts_with("http://127.0.0.1:") && page.ends_with('/'),
        "{guide}"
    );
    let demo_dir = PathBuf::from(word_after(&guide, "private profile in "));
    assert!(
        demo_dir.starts_with(tmp.path()),
        "the demo lives in TMPDIR: {guide}"
    );
    let socket = word_after(&guide, "export KITED_SOCKET=").to_string();
    let bin_dir = word_after(&guide, " PATH=")
        .strip_suffix(":$PATH")
        .unwrap_or_else(|| panic!("PATH is extended, not replaced: {guide}"))
        .to_string();
    let kitectl = PathBuf::from(bin_dir).join("kitectl");

    // The page is up; "Log in with Kite" asks the API for a login URL, and the simulated Kite
    // approves at once and sends the browser to kited's callback.
    let home = http_client::get(&page).unwrap();
    assert_eq!(home.status, 200, "{}", home.text());
    let info = http_client::get(&format!("{page}api/token/refresh-info")).unwrap();
    let info: Value = serde_json::from_str(&info.text()).unwrap();
    let login_url = info["login_url"]
        .as_str()
        .unwrap_or_else(|| panic!("{info}"));
    let at_sim = http_client::get(login_url).unwrap();
    assert_eq!(at_sim.status, 302, "{}", at_sim.text());
    let callback = at_sim.header("location").unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{page}auth/callback")),
        "{callback}"
    );
    let landed = http_client::get(&callback).unwrap();
    assert_eq!(landed.status, 200, "{}", landed.text());

    // The printed commands get the token: kitectl finds the demo's socket through the export.
    let out = Command::new(&kitectl)
        .env("KITED_SOCKET", &socket)
        .args(["get-token"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.len() >= 16, "{token:?}");
    assert!(
        !processes_mentioning(demo_dir.to_str().unwrap()).is_empty(),
        "kited runs in the demo dir"
    );

    // Ctrl-C: kite-demo exits 0, kited is gone, the directory too.
    demo.interrupt();
    let mut status = None;
    eventually(STOP_DEADLINE, "kite-demo to exit after Ctrl-C", || {
        status = demo.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{status:?}");
    assert_eq!(
        processes_mentioning(demo_dir.to_str().unwrap()),
        Vec::<String>::new()
    );
    assert!(!demo_dir.exists(), "{} left behind", demo_dir.display());
    assert!(
        http_client::get(&page).is_err(),
        "kited's port still answers"
    );
}
