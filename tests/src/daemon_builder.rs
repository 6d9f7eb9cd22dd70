//! How a test describes the `kited` it wants ([`DaemonBuilder`]): environment, arguments, config
//! file, state dir, socket; [`DaemonBuilder::start`] turns it into a running [`Daemon`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::{free_port, Daemon};
use crate::sim::Sim;

/// How to start a [`Daemon`]. Made by [`Daemon::builder`].
#[derive(Clone)]
pub struct DaemonBuilder {
    pub(crate) sim: Sim,
    pub(crate) envs: Vec<(String, String)>,
    pub(crate) removed_envs: Vec<String>,
    pub(crate) args: Vec<String>,
    pub(crate) config_toml: Option<String>,
    pub(crate) api_key: bool,
    pub(crate) api_secret: bool,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) socket: Option<PathBuf>,
    pub(crate) set_redirect: bool,
    pub(crate) umask: Option<u32>,
}

impl DaemonBuilder {
    /// Sets (or overrides) an environment variable of the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.removed_envs.retain(|k| k != key);
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Leaves a variable the harness would set out of the daemon's environment.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.envs.retain(|(k, _)| k != key);
        self.removed_envs.push(key.into());
        self
    }

    /// Writes `DIR/config.toml` and passes `--config` with it.
    pub fn config_toml(mut self, toml: &str) -> Self {
        self.config_toml = Some(toml.into());
        self
    }

    /// Starts without `KITE_API_KEY` (the daemon should report "not configured").
    pub fn no_api_key(mut self) -> Self {
        self.api_key = false;
        self
    }

    /// Starts without `KITE_API_SECRET`.
    pub fn no_api_secret(mut self) -> Self {
        self.api_secret = false;
        self
    }

    /// Uses this state dir instead of `DIR/state` (to start on another daemon's state).
    pub fn state_dir(mut self, path: impl AsRef<Path>) -> Self {
        self.state_dir = Some(path.as_ref().to_path_buf());
        self
    }

    /// Uses this socket path instead of `DIR/kited.sock`.
    pub fn socket(mut self, path: impl AsRef<Path>) -> Self {
        self.socket = Some(path.as_ref().to_path_buf());
        self
    }

    /// Appends a daemon argument (after the harness's own flags), e.g. `--profile dev`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts kited under this umask (e.g. `0o000`, to see it make its files private by itself).
    /// Only the daemon's process gets it: the tests share one process, and a umask is process-wide.
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// Leaves the sim's redirect URL alone; by default it is pointed at this daemon's
    /// `http://127.0.0.1:PORT/auth/callback` at every start.
    pub fn keep_redirect(mut self) -> Self {
        self.set_redirect = false;
        self
    }

    /// Spawns the daemon and waits until the socket answers `ping` and `/healthz` answers 200.
    /// Panics with the daemon's log if that does not happen within [`START_DEADLINE`].
    pub fn start(self) -> Daemon {
        let mut daemon = self.spawn();
        daemon.wait_ready();
        daemon
    }

    /// Spawns the daemon without waiting for it (for tests that expect it to fail to start;
    /// see [`Daemon::wait_exit`]).
    pub fn spawn(self) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("kited-e2e-")
            .tempdir()
            .expect("cannot create a temp dir");
        for sub in ["run", "config", "xdg-state"] {
            let path = dir.path().join(sub);
            fs::create_dir_all(&path).expect("cannot create a temp subdir");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                .expect("cannot chmod a temp subdir");
        }
        let config_path = self.config_toml.as_ref().map(|toml| {
            let path = dir.path().join("config.toml");
            fs::write(&path, toml).expect("cannot write config.toml");
            path
        });
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| dir.path().join("kited.sock"));
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("state"));
        let log_path = dir.path().join("kited.log");
        let mut daemon = Daemon {
            child: None,
            port: free_port(),
            socket,
            state_dir,
            config_path,
            log_path,
            run_log_start: 0,
            settings: self,
            dir,
        };
        daemon.spawn_child();
        daemon
    }
}
