//! Acting as a second local uid: switching a thread's credentials, kitectl and kited as another user, and the processes and directories that go with it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The attacker: `nobody`.
pub const ATTACKER: u32 = 65534;

/// How long a process started here may take to finish.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(15);

/// Why the tests that act as a second uid are ignored where the build was not root (see
/// `tests/build.rs`); under `CI=true` they run, and [`require_root`] fails them if not root.
pub const NEEDS_ROOT: &str = "acts as a second uid: needs root (CI runs as root)";

/// Fails the test, with the reason, when it cannot act as another uid.
pub fn require_root() {
    assert!(rustix::process::geteuid().is_root(), "{NEEDS_ROOT}");
}

/// Switches the calling thread (only) to `uid`, with the same gid and no supplementary groups.
pub fn become_user(uid: u32) {
    let id = |n| rustix::process::Gid::from_raw(n);
    rustix::thread::set_thread_groups(&[]).expect("setgroups");
    rustix::thread::set_thread_res_gid(id(uid), id(uid), id(uid)).expect("setresgid");
    let uid = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).expect("setresuid");
}

/// Runs `f` on a thread of its own as `uid` and returns what it returns.
pub fn as_user<T: Send + 'static>(uid: u32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        become_user(uid);
        f()
    })
    .join()
    .expect("the other user's thread panicked")
}

/// Waits for `child` up to [`PROCESS_DEADLINE`], killing it if it does not finish.
pub fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "process did not finish within {PROCESS_DEADLINE:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// Kills a process when dropped (a kited that should have refused to start, or a victim's).
pub struct Running(pub Option<Child>);

impl Running {
    pub fn wait_failed(mut self) -> Output {
        finish(self.0.take().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One request on a fresh connection to `socket`; `None` when kited hung up without answering.
pub fn ask(socket: &Path, request: &Value) -> Option<Value> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(PROCESS_DEADLINE)).unwrap();
    (&stream)
        .write_all(format!("{request}\n").as_bytes())
        .ok()?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// The next answer line; `None` when kited hung up instead.
pub fn next_answer(reader: &mut impl BufRead) -> Option<Value> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}
