//! Installing kited as a user would: `kitectl setup` writing a profile (flags, a terminal, bad
//! input, existing files), a kited started by hand finding the secret setup wrote, and the
//! repository's units under a real (private) systemd user manager, enabled by `kitectl setup`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kite_tests::harness::{bin, eventually, free_port};
use kite_tests::terminal::Terminal;
use kite_tests::user_manager::UserManager;
use kite_tests::{follow_browser_login, Daemon, Sim};

use crate::helper::{mode, sim, text};

/// A throwaway home: `HOME`, `XDG_CONFIG_HOME` and `XDG_RUNTIME_DIR` (with no user manager in it,
/// so `systemctl --user` finds nothing).
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("kited-install-")
            .tempdir()
            .unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        Home { dir }
    }

    fn config_home(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn kited_dir(&self) -> PathBuf {
        self.config_home().join("kited")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.kited_dir().join(name)
    }

    /// `kitectl ARGS` with only this home in its environment.
    fn kitectl(&self, args: &[&str]) -> Command {
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
    fn run(&self, args: &[&str], stdin: &str) -> Output {
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
}

/// Asserts exit 2 with one stderr line containing `names`, and no config directory written.
fn assert_usage_error(home: &Home, out: &Output, names: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(names), "{names:?} not named in: {stderr}");
    assert!(
        !home.kited_dir().exists(),
        "bad input wrote {}",
        home.kited_dir().display()
    );
}

#[test]
fn setup_without_a_terminal_names_what_is_missing() {
    let home = Home::new();
    let out = home.run(&["setup", "--no-systemd"], "");
    assert_usage_error(&home, &out, "--api-key");
    let out = home.run(&["setup", "--no-systemd", "--api-key", "abcdef12"], "");
    assert_usage_error(&home, &out, "--api-secret-file");
}

#[test]
fn setup_refuses_bad_input_and_writes_nothing() {
    let home = Home::new();
    let secret_file = home.dir.path().join("secret.txt");
    fs::write(&secret_file, "s3cret\n").unwrap();
    let secret = secret_file.to_str().unwrap();
    // (flags after `setup --no-systemd --api-key`, stdin, what the error must name)
    let cases: [(&[&str], &str, &str); 7] = [
        (&["abc"], "", "api key"),
        (&["abc def 12"], "", "api key"),
        (
            &["abcdef12", "--api-secret-file", "-"],
            "\n",
            "secret is empty",
        ),
        (
            &["abcdef12", "--api-secret-file", "-"],
            "  \n",
            "secret is empty",
        ),
        (
            &["abcdef12", "--api-secret-file", "/nonexistent/s"],
            "",
            "/nonexistent/s",
        ),
        (
            &[
                "abcdef12",
                "--api-secret-file",
                secret,
                "--public-url",
                "https://k.example.com/kited",
            ],
            "",
            "no path",
        ),
        (
            &[
                "abcdef12",
                "--api-secret-file",
                secret,
                "--public-url",
                "k.example.com",
            ],
            "",
            "public URL",
        ),
    ];
    for (args, stdin, names) in cases {
        let mut all = vec!["setup", "--no-systemd", "--api-key"];
        all.extend(args);
        let out = home.run(&all, stdin);
        assert_usage_error(&home, &out, names);
    }
}

#[test]
fn setup_writes_private_files_that_a_kited_started_by_hand_uses() {
    let sim = sim();
    let home = Home::new();
    let out = home.run(
        &[
            "setup",
            "--no-systemd",
            "--api-key",
            &sim.api_key(),
            "--api-secret-file",
            "-",
        ],
        &format!("{}\n", sim.api_secret()),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("http://127.0.0.1:8079/auth/callback"),
        "the redirect URL to register: {stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("kitectl login --open"),
        "ends with the next step: {stdout}"
    );
    let config = home.file("default.toml");
    let secret = home.file("default.api-secret");
    assert_eq!(mode(&home.kited_dir()), 0o700);
    assert_eq!(mode(&config), 0o600);
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(
        fs::read_to_string(&secret).unwrap().trim(),
        sim.api_secret()
    );
    let toml = fs::read_to_string(&config).unwrap();
    assert!(toml.contains(&sim.api_key()), "{toml}");
    assert!(
        !toml.contains(&sim.api_secret()),
        "the secret is in the TOML:\n{toml}"
    );
    assert!(
        !stdout.contains(&sim.api_secret()),
        "the secret was printed"
    );

    // A kited started by hand, with neither KITE_API_KEY nor KITE_API_SECRET, finds both.
    let daemon = Daemon::builder(&sim)
        .no_api_key()
        .no_api_secret()
        .env("XDG_CONFIG_HOME", home.config_home().to_str().unwrap())
        .start();
    let check = daemon.kited_command(&["check-config"]).output().unwrap();
    let check_out = text(&check.stdout);
    assert!(check.status.success(), "{check_out}{}", text(&check.stderr));
    let secret_row = check_out
        .lines()
        .find(|l| l.starts_with("kite.api_secret "))
        .unwrap_or_else(|| panic!("no secret row:\n{check_out}"));
    assert!(
        secret_row.contains("the profile's secret file")
            && secret_row.contains(secret.to_str().unwrap()),
        "{secret_row}"
    );
    let login = daemon.ctl(&["login"]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    let (status, body) = follow_browser_login(&daemon, text(&login.stdout).trim());
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
    let token = daemon.ctl(&["get-token"]);
    assert!(token.status.success(), "{}", text(&token.stderr));
    assert!(sim
        .valid_access_tokens()
        .contains(&text(&token.stdout).trim().to_string()));
}

#[test]
fn setup_leaves_existing_files_alone_without_force() {
    let home = Home::new();
    let args = [
        "setup",
        "--no-systemd",
        "--api-key",
        "abcdef12",
        "--api-secret-file",
        "-",
    ];
    let out = home.run(&args, "first-secret\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret = home.file("default.api-secret");

    let out = home.run(
        &[
            "setup",
            "--no-systemd",
            "--api-key",
            "zyxwvu98",
            "--api-secret-file",
            "-",
        ],
        "second-secret\n",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(home.file("default.toml").to_str().unwrap()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "first-secret\n");
    assert!(fs::read_to_string(home.file("default.toml"))
        .unwrap()
        .contains("abcdef12"));

    // Only the secret file left over (say, from a half-done manual install) is also kept.
    fs::remove_file(home.file("default.toml")).unwrap();
    let out = home.run(&args, "second-secret\n");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(secret.to_str().unwrap()));
    assert_eq!(fs::read_to_string(&secret).unwrap(), "first-secret\n");

    let out = home.run(
        &[
            "setup",
            "--no-systemd",
            "--force",
            "--api-key",
            "zyxwvu98",
            "--api-secret-file",
            "-",
            "--public-url",
            "https://kite.example.com/",
        ],
        "second-secret\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&secret).unwrap(), "second-secret\n");
    let toml = fs::read_to_string(home.file("default.toml")).unwrap();
    assert!(
        toml.contains("zyxwvu98") && toml.contains("public_url = \"https://kite.example.com\""),
        "{toml}"
    );
    assert!(
        text(&out.stdout).contains("https://kite.example.com/auth/callback"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(mode(&secret), 0o600);
}

#[test]
fn setup_of_a_named_profile_without_a_user_manager_says_how_to_start_kited() {
    let home = Home::new();
    let out = home.run(
        &[
            "--profile",
            "prod",
            "setup",
            "--api-key",
            "abcdef12",
            "--api-secret-file",
            "-",
        ],
        "s3cret\n",
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(home.file("prod.toml").exists() && home.file("prod.api-secret").exists());
    assert!(stdout.contains("`kited --profile prod`"), "{stdout}");
    assert!(
        stdout.contains("kitectl --profile prod login --open"),
        "{stdout}"
    );
}

#[test]
fn setup_on_a_terminal_asks_and_does_not_echo_the_secret() {
    const SECRET: &str = "typed-secret-7c1d";
    let home = Home::new();
    let mut terminal = Terminal::open();
    let mut child = home
        .kitectl(&["setup", "--no-systemd"])
        .stdin(terminal.slave())
        .stdout(terminal.slave())
        .stderr(terminal.slave())
        .spawn()
        .unwrap();
    terminal.answer("api key", "abcdef12");
    terminal.answer("api secret", SECRET);
    terminal.answer("Public", "https://kite.example.com");
    let status = child.wait().unwrap();
    let screen = terminal.finish();
    assert!(status.success(), "{screen}");
    assert!(
        screen.contains("abcdef12"),
        "the key is echoed as typed: {screen}"
    );
    assert!(!screen.contains(SECRET), "the secret was echoed:\n{screen}");
    assert!(
        screen.contains("https://kite.example.com/auth/callback"),
        "{screen}"
    );
    assert_eq!(
        fs::read_to_string(home.file("default.api-secret")).unwrap(),
        format!("{SECRET}\n")
    );

    // The terminal's echo is back on afterwards.
    let attrs = rustix::termios::tcgetattr(terminal.slave()).unwrap();
    assert!(attrs
        .local_modes
        .contains(rustix::termios::LocalModes::ECHO));
}

/// How long a unit may take to change state (systemctl waits for the job itself).
const UNIT_DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn setup_on_a_terminal_asks_again_after_a_typo_and_says_where_the_secret_is() {
    let home = Home::new();
    let mut terminal = Terminal::open();
    let mut child = home
        .kitectl(&["setup", "--no-systemd"])
        .stdin(terminal.slave())
        .stdout(terminal.slave())
        .stderr(terminal.slave())
        .spawn()
        .unwrap();
    terminal.answer("api key", "not a key!");
    terminal.answer_again("api key", 2, "abcdef12");
    terminal.answer("api secret", "");
    terminal.answer_again("api secret", 2, "s3cret-after-all");
    terminal.answer("Public", "ftp://nope");
    terminal.answer_again("Public", 2, "");
    let status = child.wait().unwrap();
    let screen = terminal.finish();
    assert!(status.success(), "{screen}");
    assert_eq!(screen.matches("try again").count(), 3, "{screen}");
    assert!(
        screen.contains("copy it from your app's page on developers.kite.trade"),
        "an empty secret says where to find it: {screen}"
    );
    let toml = fs::read_to_string(home.file("default.toml")).unwrap();
    assert!(toml.contains("api_key = \"abcdef12\""), "{toml}");
    assert!(!toml.contains("public_url"), "{toml}");
    assert_eq!(
        fs::read_to_string(home.file("default.api-secret")).unwrap(),
        "s3cret-after-all\n"
    );
}

#[test]
fn setup_gives_each_further_profile_a_port_and_redirect_url_of_its_own() {
    let home = Home::new();
    let setup = |profile: &str| {
        home.run(
            &[
                "--profile",
                profile,
                "setup",
                "--no-systemd",
                "--api-key",
                "abcdef12",
                "--api-secret-file",
                "-",
            ],
            "s3cret\n",
        )
    };
    for (profile, port) in [("default", 8079), ("prod", 8179), ("dev", 8279)] {
        let out = setup(profile);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains(&format!("http://127.0.0.1:{port}/auth/callback")),
            "{profile}: {stdout}"
        );
        let toml = fs::read_to_string(home.file(&format!("{profile}.toml"))).unwrap();
        if profile == "default" {
            assert!(!toml.contains("listen"), "{toml}");
        } else {
            assert!(
                toml.contains(&format!("listen = \"127.0.0.1:{port}\"")),
                "{toml}"
            );
        }
    }
}

#[test]
fn setup_tells_a_running_unconfigured_kited_to_reload() {
    let sim = sim();
    let home = Home::new();
    // kited started before setup, with no Kite app anywhere, on the profile's own socket.
    let daemon = Daemon::builder(&sim)
        .no_api_key()
        .no_api_secret()
        .env("XDG_CONFIG_HOME", home.config_home().to_str().unwrap())
        .start();
    let before = daemon.ctl(&["status", "--json"]);
    assert!(
        text(&before.stdout).contains("\"configured\":false"),
        "{}",
        text(&before.stdout)
    );
    let socket = daemon.socket_path().to_str().unwrap().to_string();
    let out = home.run(
        &[
            "--socket",
            &socket,
            "setup",
            "--no-systemd",
            "--api-key",
            &sim.api_key(),
            "--api-secret-file",
            "-",
        ],
        &format!("{}\n", sim.api_secret()),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("it reloaded and uses this one now"),
        "{stdout}"
    );
    // The next step repeats the socket the person used.
    assert!(
        stdout.contains(&format!("kitectl --socket {socket} login --open")),
        "{stdout}"
    );
    let login = daemon.ctl(&["login"]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    let (status, body) = follow_browser_login(&daemon, text(&login.stdout).trim());
    assert_eq!(status, 200, "{body}\n{}", daemon.log());
}

/// A private user manager in a directory outside /tmp and /home (the units' `PrivateTmp=` and
/// `ProtectHome=` would hide those from kited). It needs root (private namespaces); a machine
/// that cannot run one fails the test with the reason.
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
                kited = bin("kited").display(),
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
    let root = tempfile::Builder::new()
        .prefix("sd-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
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
