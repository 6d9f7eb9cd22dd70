//! The observers of the live-token run: a `watch` subscriber, the Python and Node libraries,
//! and a restart-mode `kitectl exec` child, each reporting when it saw which token.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::OBSERVER_START_DEADLINE;

/// One report from an observer: who, when, and which token (fingerprint; `None` for watch).
pub struct Seen {
    pub observer: &'static str,
    pub at: SystemTime,
    pub fingerprint: Option<String>,
}

/// A SHA-256 prefix of the token: enough to tell tokens apart, nothing to log in with.
pub fn fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))[..16].to_string()
}

fn parse_wall(ns: &str) -> Option<SystemTime> {
    let ns: u64 = ns.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(ns))
}

/// Reads `NANOS FINGERPRINT` lines from a child's stdout into `tx` (and `ready` once).
fn follow_lines(
    observer: &'static str,
    out: impl Read + Send + 'static,
    tx: mpsc::Sender<Seen>,
    ready: mpsc::Sender<&'static str>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.trim() == "ready" {
                let _ = ready.send(observer);
                continue;
            }
            let mut words = line.split_whitespace();
            if let (Some(at), Some(fp)) = (words.next().and_then(parse_wall), words.next()) {
                let _ = tx.send(Seen {
                    observer,
                    at,
                    fingerprint: Some(fp.to_string()),
                });
            }
        }
    });
}

/// The Python observer: the official client kept current by `kited.kite()`, with its
/// `set_access_token` wrapped to report each new token the moment the library sets it.
const PYTHON_OBSERVER: &str = r#"
import hashlib, sys, threading, time, kited
kc = kited.kite(socket=sys.argv[1], root=sys.argv[2])
set_token = kc.set_access_token
def report(token):
    set_token(token)
    print(time.time_ns(), hashlib.sha256(token.encode()).hexdigest()[:16], flush=True)
kc.set_access_token = report
print("ready", flush=True)
threading.Event().wait()
"#;

/// The Node observer: the same with `kite()` from `kited-client` and `setAccessToken`.
const NODE_OBSERVER: &str = r#"
const crypto = require('node:crypto');
const kited = require(process.argv[1]);
(async () => {
  const kc = await kited.kite({ socket: process.argv[2], root: process.argv[3] });
  const set = kc.setAccessToken.bind(kc);
  kc.setAccessToken = (token) => {
    set(token);
    const ns = process.hrtime.bigint() - startHr + startNs;
    console.log(`${ns} ${crypto.createHash('sha256').update(token).digest('hex').slice(0, 16)}`);
  };
  console.log('ready');
  setInterval(() => {}, 1 << 30);
})().catch((e) => { console.error(e.message); process.exit(1); });
const startNs = BigInt(Date.now()) * 1000000n;
const startHr = process.hrtime.bigint();
"#;

/// The restart-mode child: its first act is to note the time, then which token it got.
const EXEC_CHILD: &str = r#"now=$(date +%s%N); printf '%s %s\n' "$now" "$(printf %s "$KITE_ACCESS_TOKEN" | sha256sum | cut -c1-16)"; exec sleep 100000"#;

/// The `watch` observer: a plain subscriber on the socket.
pub fn follow_watch(socket: &Path, tx: mpsc::Sender<Seen>) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("watch: {e}"))?;
    stream
        .write_all(b"{\"op\":\"watch\"}\n")
        .map_err(|e| format!("watch: {e}"))?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader
        .read_line(&mut first)
        .map_err(|e| format!("watch: {e}"))?;
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if line.contains("\"token_new\"") {
                let _ = tx.send(Seen {
                    observer: "watch",
                    at: SystemTime::now(),
                    fingerprint: None,
                });
            }
        }
    });
    Ok(())
}

pub fn kill_group(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The Python observer's command: on `socket`, with the library's Kite client pointed at
/// `root`.
pub fn python_command(python: &Path, socket: &Path, root: &str) -> Command {
    let mut cmd = Command::new(python);
    cmd.args(["-c", PYTHON_OBSERVER]).arg(socket).arg(root);
    cmd
}

/// The Node observer's command, the same with the library in `repo` and its dependencies in
/// `node_modules`.
pub fn node_command(repo: &Path, node_modules: &Path, socket: &Path, root: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.args(["-e", NODE_OBSERVER])
        .arg(repo.join("clients/node"))
        .arg(socket)
        .arg(root)
        .env("NODE_PATH", node_modules);
    cmd
}

/// Starts a library observer and follows the lines it prints.
pub fn spawn_observer(
    observer: &'static str,
    cmd: &mut Command,
    tx: mpsc::Sender<Seen>,
    ready: mpsc::Sender<&'static str>,
) -> Result<Child, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{observer} observer: {e}"))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| format!("{observer} observer: no stdout"))?;
    follow_lines(observer, out, tx, ready);
    Ok(child)
}

/// `kitectl exec --on-new-token restart` on `socket`, once its child has started with the
/// current token; each later start is reported to `tx`.
pub fn start_exec(
    kitectl: &Path,
    socket: &Path,
    tx: mpsc::Sender<Seen>,
    ready: mpsc::Sender<&'static str>,
) -> Result<Child, String> {
    let mut exec = Command::new(kitectl)
        .args(["--socket"])
        .arg(socket)
        .args([
            "exec",
            "--on-new-token",
            "restart",
            "--",
            "sh",
            "-c",
            EXEC_CHILD,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("kitectl exec: {e}"))?;
    let exec_out = exec.stdout.take().ok_or("kitectl exec: no stdout")?;
    // The exec child reports a token at once: that first line is its start, not a login.
    let (exec_ready_tx, exec_ready_rx) = mpsc::channel::<Seen>();
    follow_lines("exec", exec_out, exec_ready_tx, ready);
    let exec_forward = tx;
    let first_exec = exec_ready_rx
        .recv_timeout(OBSERVER_START_DEADLINE)
        .map_err(|_| "the exec child did not start".to_string())?;
    drop(first_exec);
    std::thread::spawn(move || {
        for seen in exec_ready_rx {
            let _ = exec_forward.send(seen);
        }
    });
    Ok(exec)
}
