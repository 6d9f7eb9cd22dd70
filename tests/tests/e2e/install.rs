//! `kitectl setup`: refusing bad input, private files, existing files left alone, profiles, telling a running kited to reload.

use std::fs;
use std::process::Output;

use kite_tests::{follow_browser_login, Daemon};

use crate::helper::setup::Home;
use crate::helper::{mode, sim, text};

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
    let stdout = home.setup_for(&sim, &[]);
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
    let out = home.setup(&[], "abcdef12", "first-secret");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let secret = home.file("default.api-secret");

    let out = home.setup(&[], "zyxwvu98", "second-secret");
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
    let out = home.setup(&[], "abcdef12", "second-secret");
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
fn setup_gives_each_further_profile_a_port_and_redirect_url_of_its_own() {
    let home = Home::new();
    let setup = |profile: &str| home.setup(&["--profile", profile], "abcdef12", "s3cret");
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
    let stdout = home.setup_for(&sim, &["--socket", &socket]);
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
