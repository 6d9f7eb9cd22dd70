//! A crowd of waiting `kitectl get-token --wait` processes all wake with the same token.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kite_tests::harness::follow_browser_login;
use kite_tests::Daemon;

use crate::helper::socket::assert_alive;
use crate::helper::{login_urls, read_outputs, sim, the_new_token};

/// Kills (SIGKILL) and reaps every child still running when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

// Crash safety

/// The sockets a process holds open, by inode.
fn sockets(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let link = std::fs::read_link(e.path()).ok()?;
                    let link = link.to_string_lossy();
                    link.starts_with("socket:").then(|| link.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_hundred_waiting_get_tokens_all_wake_with_the_same_token() {
    const CLIENTS: usize = 100;
    let sim = sim();
    let mut daemon = Daemon::start(&sim);
    let pid = daemon.pid();
    let baseline = sockets(pid);
    let connected = || sockets(pid).difference(&baseline).count();
    let mut children = Children(Vec::with_capacity(CLIENTS));
    for _ in 0..CLIENTS {
        let child = daemon
            .ctl_command(&["get-token", "--wait", "30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start kitectl");
        children.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while connected() < CLIENTS {
        if let Some((i, status)) = children
            .0
            .iter_mut()
            .enumerate()
            .find_map(|(i, c)| c.try_wait().unwrap().map(|s| (i, s)))
        {
            let mut err = String::new();
            let _ = children.0[i]
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err);
            panic!("kitectl {i} exited {status} before any login: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {CLIENTS} kitectl are connected after 20 s",
            connected()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(children
        .0
        .iter_mut()
        .all(|c| matches!(c.try_wait(), Ok(None))));

    let before = sim.valid_access_tokens();
    let (status, page) = follow_browser_login(&daemon, &login_urls(&daemon).0);
    assert_eq!(status, 200, "{page}");
    let logged_in = Instant::now();
    let token = the_new_token(&sim, &before);

    let deadline = logged_in + Duration::from_secs(5);
    let mut outputs = Vec::with_capacity(CLIENTS);
    for child in &mut children.0 {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let (out, err) = read_outputs(child);
                outputs.push((status, out, err));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a waiting kitectl did not wake within 5 s of the login"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
    eprintln!(
        "all {CLIENTS} woke within {:?} of the login",
        logged_in.elapsed()
    );
    for (status, out, err) in outputs {
        assert!(status.success(), "kitectl exited {status}: {err}");
        assert_eq!(out, format!("{token}\n"), "stderr: {err}");
    }
    assert_alive(&mut daemon, pid);
}
