//! `kitectl setup` with a real systemd user manager: it enables the unit and systemctl drives kited.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kite_tests::harness::{bin, eventually, free_port};
use kite_tests::user_manager::{service_visible_dir, UserManager};
use kite_tests::Sim;

use crate::helper::{sim, text};

/// How long a unit may take to change state (systemctl waits for the job itself).
const UNIT_DEADLINE: Duration = Duration::from_secs(30);

/// A private user manager in a directory kited can see when systemd starts it (see
/// `service_visible_dir`). It needs root (private namespaces); a machine that cannot run one
/// fails the test with the reason.
fn user_manager(dir: &Path) -> UserManager {
    match UserManager::start(dir) {
        Ok(manager) => manager,
        Err(why) => panic!("the real-systemd test needs a private systemd --user, but: {why}"),
    }
}

/// This test machine's kernel (a microVM without some /proc files) refuses the /proc remounts
/// these two need inside a nested namespace (`status=226/NAMESPACE`); every other sandbox option
/// of the units stays as shipped.
const RELAXED: &str = "ProtectKernelTunables=no\nProtectKernelLogs=no\n";

/// Installs the repository's units as a user would, plus a drop-in per unit that points
/// ExecStart at the binaries under test, aims kited at `sim` on `port`, and logs to a file.
fn install_units(manager: &UserManager, sim: &Sim, port: u16) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let log = manager.home().join("kited.log");
    let kited = manager.install_binary(&bin("kited")).unwrap();
    for unit in ["kited.service", "kited@.service"] {
        fs::copy(
            repo.join("systemd").join(unit),
            manager.unit_dir().join(unit),
        )
        .unwrap();
        let profile = if unit == "kited.service" {
            "default"
        } else {
            "%i"
        };
        let drop_in = manager.unit_dir().join(format!("{unit}.d"));
        fs::create_dir_all(&drop_in).unwrap();
        fs::write(
            drop_in.join("test.conf"),
            format!(
                "[Service]\nExecStart=\nExecStart={kited} --profile {profile} --socket %t/kited/{profile}.sock --state-dir %S/kited/{profile} run\n\
                 Environment=KITE_API_ROOT={root} KITE_LOGIN_URL={login} KITED_LISTEN=127.0.0.1:{port}\n\
                 StandardOutput=append:{log}\nStandardError=append:{log}\n{RELAXED}",
                kited = kited.display(),
                root = sim.url(),
                login = sim.login_url(),
                log = log.display(),
            ),
        )
        .unwrap();
    }
    log
}

#[test]
#[cfg_attr(
    not(kited_tests_as_root),
    ignore = "runs a private systemd --user in new namespaces: needs root (CI runs as root)"
)]
fn setup_enables_the_unit_and_systemctl_drives_kited() {
    let root = service_visible_dir(Path::new(env!("CARGO_TARGET_TMPDIR"))).unwrap();
    let manager = user_manager(root.path());
    let sim = sim();
    let port = free_port();
    sim.set_redirect_url(&format!("http://127.0.0.1:{port}/auth/callback"));
    let log_path = install_units(&manager, &sim, port);
    let log = || fs::read_to_string(&log_path).unwrap_or_default();
    let kitectl = |args: &[&str]| manager.command(bin("kitectl")).args(args).output().unwrap();

    // `kitectl setup` writes the files and enables and starts kited.service.
    let mut setup = manager
        .command(bin("kitectl"))
        .args([
            "setup",
            "--api-key",
            &sim.api_key(),
            "--api-secret-file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(setup.stdin.take().unwrap(), "{}", sim.api_secret()).unwrap();
    let out = setup.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nkited log:\n{}\n{}",
        text(&out.stderr),
        log(),
        manager.diagnose("kited")
    );
    assert!(
        stdout.contains("Enabled and started kited.service"),
        "{stdout}"
    );
    assert_eq!(manager.state_of("kited"), "active", "{}", log());
    let enabled = manager.systemctl(&["is-enabled", "kited"]);
    assert_eq!(text(&enabled.stdout).trim(), "enabled");

    // kitectl finds the unit's socket by itself; the unit got the secret through LoadCredential=.
    let status = kitectl(&["status", "--json"]);
    assert!(
        status.status.success(),
        "{}\n{}",
        text(&status.stderr),
        log()
    );
    assert!(
        text(&status.stdout).contains("\"configured\":true"),
        "{}",
        text(&status.stdout)
    );
    let login = kitectl(&["login"]);
    let (code, body) = follow_browser_login_at(&text(&login.stdout));
    assert_eq!(code, 200, "{body}\n{}", log());
    let token = kitectl(&["get-token"]);
    assert!(token.status.success(), "{}", text(&token.stderr));

    // stop: clean exit, the socket is gone; start: the token survived.
    let stop = manager.systemctl(&["stop", "kited"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert_eq!(manager.state_of("kited"), "inactive", "{}", log());
    assert!(!manager.runtime_dir().join("kited/default.sock").exists());
    assert_eq!(kitectl(&["get-token"]).status.code(), Some(3));
    let start = manager.systemctl(&["start", "kited"]);
    assert!(start.status.success(), "{}\n{}", text(&start.stderr), log());
    let again = kitectl(&["get-token"]);
    assert_eq!(
        text(&again.stdout),
        text(&token.stdout),
        "{}",
        text(&again.stderr)
    );

    // A second profile: `kitectl --profile dev setup` starts kited@dev beside it, on its own port.
    let dev_port = free_port();
    let dev_drop_in = manager.unit_dir().join("kited@dev.service.d");
    fs::create_dir_all(&dev_drop_in).unwrap();
    fs::write(
        dev_drop_in.join("zz-dev.conf"),
        format!("[Service]\nEnvironment=KITED_LISTEN=127.0.0.1:{dev_port}\n"),
    )
    .unwrap();
    let secret = manager.home().join("dev-secret");
    fs::write(&secret, format!("{}\n", sim.api_secret())).unwrap();
    let out = kitectl(&[
        "--profile",
        "dev",
        "setup",
        "--api-key",
        &sim.api_key(),
        "--api-secret-file",
        secret.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}{}\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        log(),
        manager.diagnose("kited@dev")
    );
    assert_eq!(manager.state_of("kited@dev"), "active", "{}", log());
    let ping = kitectl(&["--profile", "dev", "ping"]);
    assert!(ping.status.success(), "{}", text(&ping.stderr));
    let dev_status = kitectl(&["--profile", "dev", "status", "--json"]);
    assert!(
        text(&dev_status.stdout).contains("\"configured\":true"),
        "{}",
        text(&dev_status.stdout)
    );

    // Reload is SIGHUP to the main process: the same process re-reads its config and stays
    // active. (Sent with `systemctl kill`: in this microVM, `systemctl reload` fails because
    // ExecReload= runs in a process that cannot join a namespace that has a credential mounted, 226/NAMESPACE,
    // which no real host does.)
    let pid = main_pid(&manager, "kited@dev");
    let reload = manager.systemctl(&["kill", "--kill-whom=main", "--signal=SIGHUP", "kited@dev"]);
    assert!(
        reload.status.success(),
        "{}\n{}\n{}",
        text(&reload.stderr),
        log(),
        manager.diagnose("kited@dev")
    );
    eventually(UNIT_DEADLINE, "the reload in kited's log", || {
        log().contains("SIGHUP: configuration reloaded")
    });
    assert_eq!(main_pid(&manager, "kited@dev"), pid);
    assert_eq!(manager.state_of("kited@dev"), "active");
    assert_eq!(manager.state_of("kited"), "active");
}

/// The unit's MainPID.
fn main_pid(manager: &UserManager, unit: &str) -> String {
    let out = manager.systemctl(&["show", "--property=MainPID", "--value", unit]);
    text(&out.stdout).trim().to_string()
}

/// A browser following a login URL: the sim's 302, then kited's callback.
fn follow_browser_login_at(login_url: &str) -> (u16, String) {
    let at_sim = kite_tests::http_client::get(login_url.trim()).unwrap();
    let Some(callback) = at_sim.header("location") else {
        return (at_sim.status, at_sim.text());
    };
    let landed = kite_tests::http_client::get(callback).unwrap();
    (landed.status, landed.text())
}
