//! Where the api secret comes from: systemd credentials, a wrong one, and `check-config` naming the source never the value.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kite_tests::harness::bin;
use kite_tests::{follow_browser_login, Daemon};
use serde_json::json;

use crate::helper::systemd::{ok, QUIET};
use crate::helper::{browser_login, sim, status, text};

#[test]
fn api_secret_from_credentials_directory() {
    let sim = sim();
    let creds = tempfile::tempdir().unwrap();
    let secret_file = creds.path().join("kite-api-secret");
    // What LoadCredential= copies: the file as it is, trailing newline included.
    fs::write(&secret_file, format!("{}\n", sim.api_secret())).unwrap();
    fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o400)).unwrap();
    let mut daemon = Daemon::builder(&sim)
        .config_toml(QUIET)
        .no_api_secret()
        .env_remove("KITE_API_SECRET")
        .env("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())
        .start();
    assert!(status(&daemon).configured);
    let token = browser_login(&daemon).token;
    assert!(sim.valid_access_tokens().contains(&token));
    daemon.terminate();
    let log = daemon.log();
    assert!(
        !log.contains(&sim.api_secret()),
        "secret in the log:\n{log}"
    );
    assert!(!log.contains(&token), "token in the log:\n{log}");
}

#[test]
fn wrong_credential_secret_fails_the_login() {
    // The sim checks the checksum, so the login above proves the credential was used.
    let sim = sim();
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("kite-api-secret"), "not-the-secret\n").unwrap();
    let daemon = Daemon::builder(&sim)
        .config_toml(QUIET)
        .no_api_secret()
        .env("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())
        .start();
    let answer = daemon.request(&json!({"op": "login_url"}));
    let (status_code, body) = follow_browser_login(&daemon, answer["login_url"].as_str().unwrap());
    assert_ne!(status_code, 200, "a wrong secret must not log in: {body}");
    let token = daemon.request(&json!({"op": "get_token"}));
    assert_eq!(token["ok"], false, "{token}");
    assert!(sim.valid_access_tokens().is_empty());
}

/// `kited ARGS` with a clean environment rooted at `home` (XDG dirs below it).
fn kited_in(home: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin("kited"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .envs(envs.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    cmd.output().expect("cannot run kited")
}

fn rows(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(char::is_whitespace)?;
            Some((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

#[test]
fn check_config_shows_where_the_secret_comes_from_never_the_value() {
    const SECRET: &str = "check-config-secret-5f2e9a";
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let config_dir = home.join("config/kited");
    fs::create_dir_all(&config_dir).unwrap();
    fs::write(
        config_dir.join("default.toml"),
        "[http]\nlisten = \"127.0.0.1:8179\"\n",
    )
    .unwrap();
    let never_shows_secret = |out: &Output| {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(!all.contains(SECRET), "the secret leaked:\n{all}");
    };

    // From the environment.
    let out = kited_in(
        home,
        &["check-config"],
        &[("KITE_API_KEY", "key1"), ("KITE_API_SECRET", SECRET)],
    );
    never_shows_secret(&out);
    assert!(ok(&out), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let table = rows(&stdout);
    assert!(table["kite.api_secret"].starts_with("set"), "{stdout}");
    assert_eq!(table["kite.api_key"], "key1");
    assert!(
        stdout.contains("http://127.0.0.1:8179/auth/callback"),
        "callback URL to register:\n{stdout}"
    );

    // From systemd's credential directory (trailing newline and all).
    let creds = home.join("creds");
    fs::create_dir_all(&creds).unwrap();
    fs::write(creds.join("kite-api-secret"), format!("{SECRET}\n")).unwrap();
    let out = kited_in(
        home,
        &["check-config"],
        &[
            ("KITE_API_KEY", "key1"),
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
        ],
    );
    never_shows_secret(&out);
    assert!(ok(&out), "{}", text(&out.stderr));
    assert!(
        rows(&text(&out.stdout))["kite.api_secret"].contains("credential"),
        "{}",
        text(&out.stdout)
    );

    // Not configured: exit 1, one stderr line, the secret shown as missing.
    let out = kited_in(home, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(rows(&text(&out.stdout))["kite.api_secret"], "missing");
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );

    // The file the systemd unit loads with LoadCredential= is also kited's own last source, and
    // a loose mode is flagged.
    let unit_secret = config_dir.join("default.api-secret");
    fs::write(&unit_secret, format!("{SECRET}\n")).unwrap();
    fs::set_permissions(&unit_secret, fs::Permissions::from_mode(0o644)).unwrap();
    let out = kited_in(home, &["check-config"], &[("KITE_API_KEY", "key1")]);
    never_shows_secret(&out);
    assert!(ok(&out), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        rows(&stdout)["kite.api_secret"].contains("the profile's secret file"),
        "{stdout}"
    );
    assert!(stdout.contains("chmod 600"), "{stdout}");

    // A broken file: exit 78, nothing on stdout, one stderr line naming the file.
    let path = config_dir.join("default.toml");
    fs::write(&path, "[http]\nlisten = 8079\n").unwrap();
    let out = kited_in(home, &["check-config"], &[("KITE_API_SECRET", SECRET)]);
    never_shows_secret(&out);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
}

#[test]
fn a_channel_token_file_others_can_read_is_warned_about_at_start() {
    let sim = sim();
    let files = tempfile::tempdir().unwrap();
    let token_file = files.path().join("ntfy-token");
    fs::write(&token_file, "tk_kitedtestntfytoken0001\n").unwrap();
    fs::set_permissions(&token_file, fs::Permissions::from_mode(0o640)).unwrap();
    let daemon = Daemon::builder(&sim)
        .config_toml(&format!(
            "{QUIET}\n[push.ntfy]\nurl = \"http://127.0.0.1:9/kited-test\"\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ))
        .start();
    let log = daemon.log();
    let warning = log
        .lines()
        .find(|l| l.contains("can be read by other users"))
        .unwrap_or_else(|| panic!("no warning about the token file at start: {log}"));
    assert!(
        warning.contains(token_file.to_str().unwrap()) && warning.contains("mode 0640"),
        "{warning}"
    );
    assert!(
        !log.contains("kitedtestntfytoken"),
        "the token reached the log: {log}"
    );
}
