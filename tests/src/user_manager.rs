//! A throwaway `systemd --user` for tests: its own mount and PID namespaces (so nothing it starts
//! outlives it), its own `XDG_RUNTIME_DIR`, home and unit directory, driven with the real
//! `systemctl --user`.
//!
//! systemd refuses to run a user manager unless the system was booted with systemd
//! (`/run/systemd/system` exists); the namespace gets its own `/run` with that directory in it, so
//! this works on machines and containers without systemd as PID 1 too (it needs root or
//! unprivileged user namespaces for `unshare`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Starting a user manager takes well under a second; a loaded CI machine may need more.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// The manager itself.
const SYSTEMD: &str = "/usr/lib/systemd/systemd";

/// A private user manager. Dropping it kills the namespace (the manager and every service).
pub struct UserManager {
    unshare: Child,
    /// The namespace's PID 1 (as the host sees it), for `nsenter`.
    init_pid: u32,
    dir: PathBuf,
}

/// The directories every service of the units gets a private, empty copy of (`PrivateTmp=`):
/// nothing under them is visible to kited when systemd starts it.
const PRIVATE_TO_SERVICES: [&str; 2] = ["/tmp", "/var/tmp"];
/// Where [`service_visible_dir`] goes when `within` is hidden: the tests that start a user
/// manager run as root, and /var/lib is neither private to services nor read-only for root.
const VISIBLE_FALLBACK: &str = "/var/lib";

/// A fresh directory for [`UserManager::start`] and the binaries its services run: under
/// `within` (the test's scratch space), unless that lies where services see an empty private
/// directory instead, as it does for a checkout under /tmp; then under /var/lib. Removed when
/// dropped.
pub fn service_visible_dir(within: &Path) -> std::io::Result<tempfile::TempDir> {
    let resolved = within.canonicalize()?;
    let hidden = PRIVATE_TO_SERVICES
        .iter()
        .any(|private| resolved.starts_with(private));
    let parent = if hidden {
        Path::new(VISIBLE_FALLBACK)
    } else {
        within
    };
    tempfile::Builder::new()
        .prefix("kite-tests-sd-")
        .tempdir_in(parent)
}

impl UserManager {
    /// Starts a user manager with its files under `dir`, which must be visible to services (see
    /// [`service_visible_dir`]). Returns why not when this machine cannot run one.
    pub fn start(dir: &Path) -> Result<UserManager, String> {
        if !Path::new(SYSTEMD).exists() {
            return Err(format!("{SYSTEMD} is missing (apt-get install systemd)"));
        }
        for sub in ["run", "home/.config/systemd/user", "home/.local/state"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o700))
            .map_err(|e| e.to_string())?;
        let log = fs::File::create(dir.join("systemd.log")).map_err(|e| e.to_string())?;
        // PID 1 of the namespace is the shell (systemd --user will not be PID 1); when unshare
        // dies, --kill-child kills it, and with it everything in the namespace.
        let script = format!(
            "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && {SYSTEMD} --user & wait"
        );
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--",
            "sh",
            "-c",
        ])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
        let manager_env = UserManager::env_for(dir);
        cmd.env_clear().envs(manager_env);
        let unshare = cmd
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let mut manager = UserManager {
            unshare,
            init_pid: 0,
            dir: dir.to_path_buf(),
        };
        manager.wait_running()?;
        Ok(manager)
    }

    /// The environment a user session would have: HOME, XDG dirs, PATH.
    fn env_for(dir: &Path) -> Vec<(String, String)> {
        let home = dir.join("home");
        vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            ),
            ("HOME".into(), home.display().to_string()),
            (
                "XDG_RUNTIME_DIR".into(),
                dir.join("run").display().to_string(),
            ),
            (
                "XDG_CONFIG_HOME".into(),
                home.join(".config").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                home.join(".local/state").display().to_string(),
            ),
        ]
    }

    fn wait_running(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        let private = self.dir.join("run/systemd/private");
        let children = format!("/proc/{0}/task/{0}/children", self.unshare.id());
        loop {
            if self.init_pid == 0 {
                self.init_pid = fs::read_to_string(&children)
                    .ok()
                    .and_then(|text| text.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
            }
            if let Ok(Some(status)) = self.unshare.try_wait() {
                return Err(format!(
                    "the user manager exited at once ({status}): {}",
                    self.log().trim()
                ));
            }
            if self.init_pid != 0 && private.exists() {
                let out = self.systemctl(&["is-system-running", "--wait"]);
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if state == "running" || state == "degraded" {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no running user manager within {START_DEADLINE:?}: {}",
                    self.log().trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the manager printed.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("systemd.log")).unwrap_or_default()
    }

    /// The session's HOME.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// `$XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// A copy of `binary` in the manager's directory, where its services can run it whatever
    /// the checkout's own location hides from them.
    pub fn install_binary(&self, binary: &Path) -> std::io::Result<PathBuf> {
        let dir = self.dir.join("bin");
        fs::create_dir_all(&dir)?;
        let name = binary.file_name().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "a binary path has a name")
        })?;
        let copy = dir.join(name);
        fs::copy(binary, &copy)?;
        Ok(copy)
    }

    /// `~/.config/systemd/user`, where units go.
    pub fn unit_dir(&self) -> PathBuf {
        self.home().join(".config/systemd/user")
    }

    /// `program ARGS` inside the namespace (where `/run/systemd/system` exists, so systemctl
    /// believes in the manager), in the session's environment and nothing else of the test's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "--target",
            &self.init_pid.to_string(),
            "--mount",
            "--pid",
            "--",
        ])
        .arg(program)
        .env_clear()
        .envs(UserManager::env_for(&self.dir))
        .stdin(Stdio::null());
        cmd
    }

    /// `systemctl --user ARGS`, run to completion.
    pub fn systemctl(&self, args: &[&str]) -> Output {
        self.command("systemctl")
            .arg("--user")
            .args(args)
            .output()
            .expect("cannot run systemctl")
    }

    /// `systemctl --user status UNIT` and the manager's own log, for failure messages.
    pub fn diagnose(&self, unit: &str) -> String {
        let status = self.systemctl(&["status", "--no-pager", "--lines=20", unit]);
        format!(
            "systemctl --user status {unit}:\n{}{}\nsystemd --user log:\n{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr),
            self.log()
        )
    }

    /// `systemctl --user is-active UNIT`'s answer ("active", "inactive", "failed", ...).
    pub fn state_of(&self, unit: &str) -> String {
        let out = self.systemctl(&["is-active", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for UserManager {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
