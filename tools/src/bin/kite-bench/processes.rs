//! Whole processes: `kitectl get-token` against `cat` of a file holding the same token, run
//! one at a time and interleaved (ABBA), so drift on the machine hits both alike.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::progress;
use crate::report::Samples;
use crate::setup::Bench;

/// The two commands, each with the same small environment; kitectl finds the socket the
/// default way through `$XDG_RUNTIME_DIR`.
pub struct Commands {
    kitectl: PathBuf,
    cat: PathBuf,
    token_file: PathBuf,
    runtime: PathBuf,
    path_var: OsString,
}

impl Commands {
    /// Writes the token file `cat` reads next to kited's socket.
    pub fn new(kitectl: &Path, cat: &Path, bench: &Bench) -> Result<Commands, String> {
        let token_file = bench.runtime.path().join("token.txt");
        fs::write(&token_file, &bench.expected_stdout).map_err(|e| e.to_string())?;
        Ok(Commands {
            kitectl: kitectl.to_path_buf(),
            cat: cat.to_path_buf(),
            token_file,
            runtime: bench.runtime.path().to_path_buf(),
            path_var: std::env::var_os("PATH").unwrap_or_default(),
        })
    }

    /// `kitectl get-token`.
    pub fn kitectl(&self) -> Command {
        self.command(&self.kitectl, OsStr::new("get-token"))
    }

    /// `cat` of the token file.
    pub fn cat(&self) -> Command {
        self.command(&self.cat, self.token_file.as_os_str())
    }

    fn command(&self, program: &Path, arg: &OsStr) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg(arg)
            .env_clear()
            .env("PATH", &self.path_var)
            .env("HOME", &self.runtime)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }
}

/// Runs `cmd` to completion with stdout to a pipe; returns the wall time and stdout.
fn time_process(cmd: &mut Command) -> Result<(Duration, Vec<u8>), String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!("{cmd:?} exited {}", out.status));
    }
    Ok((took, out.stdout))
}

/// The wall times of each command, after a warm-up.
pub struct Whole {
    pub kitectl: Samples,
    pub cat: Samples,
}

impl Whole {
    /// The ratio of the medians, kitectl over cat.
    pub fn ratio(&self) -> f64 {
        self.kitectl.median().as_secs_f64() / self.cat.median().as_secs_f64()
    }
}

/// `runs` runs of each command, interleaved ABBA; each must print `expected`.
pub fn interleaved(commands: &Commands, runs: usize, expected: &[u8]) -> Result<Whole, String> {
    let mut ctl_cmd = commands.kitectl();
    let mut cat_cmd = commands.cat();
    progress(&format!(
        "whole processes: {runs} x kitectl get-token and {runs} x cat, interleaved"
    ));
    for _ in 0..50 {
        time_process(&mut ctl_cmd)?;
        time_process(&mut cat_cmd)?;
    }
    let mut ctl_times = Vec::with_capacity(runs);
    let mut cat_times = Vec::with_capacity(runs);
    for i in 0..runs {
        // ABBA order: neither command always runs right after the other.
        let ctl_first = i % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == ctl_first {
                let (t, out) = time_process(&mut ctl_cmd)?;
                if out != expected {
                    return Err(format!(
                        "kitectl get-token printed {:?}",
                        String::from_utf8_lossy(&out)
                    ));
                }
                ctl_times.push(t);
            } else {
                let (t, out) = time_process(&mut cat_cmd)?;
                if out != expected {
                    return Err("cat printed something else".into());
                }
                cat_times.push(t);
            }
        }
    }
    Ok(Whole {
        kitectl: Samples::new(ctl_times),
        cat: Samples::new(cat_times),
    })
}
