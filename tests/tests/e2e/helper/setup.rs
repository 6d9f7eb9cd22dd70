//! A throwaway home for `kitectl setup`, and setup run in it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use kite_tests::harness::bin;
use kite_tests::Sim;

use super::text;

/// A throwaway home: `HOME`, `XDG_CONFIG_HOME` and `XDG_RUNTIME_DIR` (with no user manager in it,
/// so `systemctl --user` finds nothing).
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("kited-install-")
            .tempdir()
            .unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        Home { dir }
    }

    pub fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    pub fn kited_dir(&self) -> PathBuf {
        self.config_home().join("kited")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.kited_dir().join(name)
    }

    /// `kitectl ARGS` with only this home in its environment.
    pub fn kitectl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("kitectl"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .args(args);
        cmd
    }

    /// Runs `kitectl ARGS` with `stdin` piped in (not a terminal).
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kitectl(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run kitectl");
        // kitectl may exit before reading stdin (a usage error): a broken pipe is fine.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child.wait_with_output().unwrap()
    }

    /// `kitectl GLOBAL_ARGS setup --no-systemd --api-key API_KEY --api-secret-file -` with
    /// `secret` and a newline on stdin.
    pub fn setup(&self, global_args: &[&str], api_key: &str, secret: &str) -> Output {
        let mut args = global_args.to_vec();
        args.extend([
            "setup",
            "--no-systemd",
            "--api-key",
            api_key,
            "--api-secret-file",
            "-",
        ]);
        self.run(&args, &format!("{secret}\n"))
    }

    /// [`setup`](Self::setup) for the simulator's app; asserts it succeeded and returns what it
    /// printed.
    pub fn setup_for(&self, sim: &Sim, global_args: &[&str]) -> String {
        let out = self.setup(global_args, &sim.api_key(), &sim.api_secret());
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        stdout
    }
}
