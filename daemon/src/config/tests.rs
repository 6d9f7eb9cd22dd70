//! Unit tests of `config`: precedence, defaults, secrets, durations, the reminder, the test knobs.
use super::*;
use std::collections::HashMap;

fn load(flags: Flags, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(&flags, &move |key| vars.get(key).cloned())
}

fn flags(profile: &str) -> Flags {
    Flags {
        profile: profile.into(),
        ..Flags::default()
    }
}

#[test]
fn defaults_follow_xdg_and_profile() {
    let config = load(
        flags("dev"),
        &[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/1")],
    )
    .unwrap();
    assert_eq!(
        config.config_path,
        PathBuf::from("/home/u/.config/kited/dev.toml")
    );
    assert!(!config.config_file_found);
    assert_eq!(
        config.state_dir,
        PathBuf::from("/home/u/.local/state/kited/dev")
    );
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.api_root, DEFAULT_API_ROOT);
    assert!(!config.is_configured());
    assert_eq!(config.expiry.cutoff, crate::clock::default_cutoff());
    assert_eq!(config.kite_timeout, DEFAULT_KITE_TIMEOUT);
}

#[test]
fn relative_xdg_values_are_ignored() {
    let config = load(
        flags("dev"),
        &[
            ("HOME", "/home/u"),
            ("XDG_RUNTIME_DIR", "run"),
            ("XDG_CONFIG_HOME", "conf"),
            ("XDG_STATE_HOME", "./state"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.config_path,
        PathBuf::from("/home/u/.config/kited/dev.toml")
    );
    assert_eq!(
        config.state_dir,
        PathBuf::from("/home/u/.local/state/kited/dev")
    );
    assert!(config.socket.is_absolute(), "{}", config.socket.display());
}

#[test]
fn flag_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"127.0.0.1:1111\"\n[kite]\napi_key = \"filekey\"\n",
    )
    .unwrap();
    let path_text = path.to_str().unwrap();
    let from_file = load(flags("p"), &[("KITED_CONFIG", path_text)]).unwrap();
    assert_eq!(from_file.listen.port(), 1111);
    assert_eq!(from_file.api_key.as_deref(), Some("filekey"));
    let from_env = load(
        flags("p"),
        &[
            ("KITED_CONFIG", path_text),
            ("KITED_LISTEN", "127.0.0.1:2222"),
            ("KITE_API_KEY", "envkey"),
        ],
    )
    .unwrap();
    assert_eq!(from_env.listen.port(), 2222);
    assert_eq!(from_env.api_key.as_deref(), Some("envkey"));
    let from_flag = load(
        Flags {
            listen: Some("127.0.0.1:3333".into()),
            ..flags("p")
        },
        &[
            ("KITED_CONFIG", path_text),
            ("KITED_LISTEN", "127.0.0.1:2222"),
        ],
    )
    .unwrap();
    assert_eq!(from_flag.listen.port(), 3333);
}

#[test]
fn secret_sources_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cred = dir.path().join(CREDENTIAL_NAME);
    std::fs::write(&cred, "credsecret\n").unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let config = load(flags("p"), &[("CREDENTIALS_DIRECTORY", dir_text)]).unwrap();
    assert_eq!(config.api_secret.unwrap().expose(), "credsecret");
    assert_eq!(config.secret_source, SecretSource::Credential(cred));
    let config = load(
        flags("p"),
        &[
            ("CREDENTIALS_DIRECTORY", dir_text),
            ("KITE_API_SECRET", "envsecret"),
        ],
    )
    .unwrap();
    assert_eq!(config.api_secret.unwrap().expose(), "envsecret");
}

#[test]
fn profile_secret_file_is_the_last_source() {
    let dir = tempfile::tempdir().unwrap();
    let kited = dir.path().join("kited");
    std::fs::create_dir(&kited).unwrap();
    let file = kited.join("dev.api-secret");
    std::fs::write(&file, "filesecret\n").unwrap();
    let home = dir.path().to_str().unwrap();
    let config = load(flags("dev"), &[("XDG_CONFIG_HOME", home)]).unwrap();
    assert_eq!(config.api_secret.unwrap().expose(), "filesecret");
    assert_eq!(
        config.secret_source,
        SecretSource::ProfileFile(file.clone())
    );
    let cred = dir.path().join(CREDENTIAL_NAME);
    std::fs::write(&cred, "credsecret\n").unwrap();
    let config = load(
        flags("dev"),
        &[("XDG_CONFIG_HOME", home), ("CREDENTIALS_DIRECTORY", home)],
    )
    .unwrap();
    assert_eq!(config.secret_source, SecretSource::Credential(cred));
    let other = load(flags("prod"), &[("XDG_CONFIG_HOME", home)]).unwrap();
    assert_eq!(other.secret_source, SecretSource::Missing);
}

#[test]
fn broken_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[kite]\napi_key = \"k\"\n[expiry]\ncutof = \"06:00\"\n",
    )
    .unwrap();
    let err = load(
        Flags {
            config: Some(path.clone()),
            ..flags("p")
        },
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(path.to_str().unwrap()), "{err}");
    assert!(err.contains("cutof"), "{err}");
    assert!(err.contains("line 4"), "{err}");
}

#[test]
fn explicit_missing_file_is_an_error() {
    let err = load(
        Flags {
            config: Some("/nonexistent/kited.toml".into()),
            ..flags("p")
        },
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
}

#[test]
fn blank_key_or_secret_is_not_configured() {
    let config = load(
        flags("p"),
        &[("KITE_API_KEY", "k123456"), ("KITE_API_SECRET", "  ")],
    )
    .unwrap();
    assert!(!config.is_configured());
    assert_eq!(config.secret_source, SecretSource::Missing);
}

#[test]
fn open_command_leaves_the_sandbox_under_systemd() {
    assert_eq!(
        load(flags("p"), &[]).unwrap().notify.open_command,
        vec!["xdg-open"]
    );
    let under = load(flags("p"), &[("INVOCATION_ID", "abc")]).unwrap();
    assert_eq!(under.notify.open_command[0], "systemd-run");
}

fn load_toml(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).unwrap();
    let mut vars = vars.to_vec();
    vars.push(("KITED_CONFIG", path.to_str().unwrap()));
    load(flags("p"), &vars)
}

#[test]
fn durations() {
    let config = load_toml(
        "[kite]\ntimeout = \"250ms\"\n[expiry]\nverify_every = \"1h30m\"\nwarn_before = [\"2s\", \"15m\"]\n",
        &[],
    )
    .unwrap();
    assert_eq!(config.kite_timeout, Duration::from_millis(250));
    assert_eq!(config.expiry.verify_every, Duration::from_secs(5400));
    assert_eq!(
        config.expiry.warn_before,
        vec![Duration::from_secs(900), Duration::from_secs(2)]
    );
    for bad in ["", "m", "15", "15x", "-1m", "1h-5m"] {
        let err = load_toml(&format!("[kite]\ntimeout = {bad:?}\n"), &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{bad}: {err}");
        assert!(err.to_string().contains("line 2"), "{bad}: {err}");
    }
    for zero in [
        "[kite]\ntimeout = \"0s\"\n",
        "[expiry]\nverify_every = \"0s\"\n",
    ] {
        assert!(load_toml(zero, &[]).is_err(), "{zero}");
    }
}

#[test]
fn reminder_is_parsed_at_load() {
    let default = load(flags("p"), &[]).unwrap();
    assert_eq!(
        default.expiry.reminder.as_str(),
        crate::config::expiry::DEFAULT_REMINDER
    );
    let five_fields = load_toml("[expiry]\nreminder = \"30 8 * * Mon-Fri\"\n", &[]).unwrap();
    assert_eq!(five_fields.expiry.reminder.as_str(), "30 8 * * Mon-Fri");
    for bad in ["not cron", "0 45 8 * * Mon-Fry", "61 * * * *", ""] {
        let err = load_toml(&format!("[expiry]\nreminder = {bad:?}\n"), &[]).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "expiry.reminder",
                    ..
                }
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn testing_knobs_come_from_the_environment_and_are_checked() {
    let plain = load(flags("p"), &[]).unwrap();
    assert_eq!(plain.testing, Testing::default());
    assert_eq!(plain.command_timeout(), DEFAULT_COMMAND_TIMEOUT);
    let set = load(
        flags("p"),
        &[
            ("KITED_FAKE_NOW", "2026-11-23T08:44:50+05:30"),
            ("KITED_COMMAND_TIMEOUT_MS", "250"),
        ],
    )
    .unwrap();
    assert_eq!(
        set.testing.fake_now.unwrap().to_rfc3339(),
        "2026-11-23T08:44:50+05:30"
    );
    assert_eq!(set.command_timeout(), Duration::from_millis(250));
    for (key, bad) in [
        ("KITED_FAKE_NOW", "yesterday"),
        ("KITED_COMMAND_TIMEOUT_MS", "0"),
        ("KITED_COMMAND_TIMEOUT_MS", "soon"),
    ] {
        let err = load(flags("p"), &[(key, bad)]).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn callback_url_prefers_the_public_url() {
    let local = load(flags("p"), &[]).unwrap();
    assert_eq!(
        local.callback_url(4242),
        "http://127.0.0.1:4242/auth/callback"
    );
    let public = load(
        flags("p"),
        &[("KITED_PUBLIC_URL", "https://kite.example.com/")],
    )
    .unwrap();
    assert_eq!(
        public.callback_url(4242),
        "https://kite.example.com/auth/callback"
    );
}

#[test]
fn warn_windows_sorted_longest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[expiry]\nwarn_before = [\"1m\", \"15m\"]\ncutoff = \"07:30\"\n",
    )
    .unwrap();
    let config = load(flags("p"), &[("KITED_CONFIG", path.to_str().unwrap())]).unwrap();
    assert_eq!(
        config.expiry.warn_before,
        vec![Duration::from_secs(900), Duration::from_secs(60)]
    );
    assert_eq!(config.expiring_window(), chrono::Duration::minutes(15));
}

#[test]
fn public_listen_needs_public_url() {
    let error = load(flags("p"), &[("KITED_PUBLIC_LISTEN", "127.0.0.1:8080")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("http.public_listen") && error.contains("http.public_url"),
        "{error}"
    );
    let config = load(
        flags("p"),
        &[
            ("KITED_PUBLIC_LISTEN", "/srv/kited/public.sock"),
            ("KITED_PUBLIC_URL", "https://kite.example.com"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.public_listen,
        Some(PublicListen::Unix("/srv/kited/public.sock".into()))
    );
    let error = load(
        flags("p"),
        &[
            ("KITED_PUBLIC_LISTEN", "kite.sock"),
            ("KITED_PUBLIC_URL", "https://kite.example.com"),
        ],
    )
    .unwrap_err();
    assert!(error.to_string().contains("http.public_listen"), "{error}");
}

#[test]
fn a_listen_address_off_loopback_needs_listen_public_ok() {
    let error = load(flags("p"), &[("KITED_LISTEN", "0.0.0.0:8079")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("http.listen") && error.contains("http.listen_public_ok"),
        "{error}"
    );
    assert!(load(flags("p"), &[("KITED_LISTEN", "[::1]:8079")]).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[http]\nlisten = \"0.0.0.0:8079\"\nlisten_public_ok = true\n",
    )
    .unwrap();
    let config = load(flags("p"), &[("KITED_CONFIG", path.to_str().unwrap())]).unwrap();
    assert!(config.listen_public_ok);
    assert_eq!(config.listen.to_string(), "0.0.0.0:8079");
}
