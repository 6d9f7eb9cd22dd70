//! `kited check-config`: the resolved settings (the secret only as set or missing), the callback
//! URL to register with Kite, and whether kited can log in.

use crate::config::file::{
    File, FileExpiry, FileHooks, FileHttp, FileIpc, FileKite, FileNotify, FileStore,
};
use crate::config::push::FilePush;
use crate::config::readiness::FileReadiness;
use crate::config::sinks::FileSinks;
use crate::config::{Config, Flags, SecretSource};
use std::path::Path;
use std::process::ExitCode;

/// The width of the key column: the longest key (`push.telegram.bot_token_file`) and a space.
const KEY_WIDTH: usize = 29;

/// `kited check-config`: the resolved settings (secret as set/missing) and the callback URL.
pub fn run(flags: &Flags) -> anyhow::Result<ExitCode> {
    let config = Config::from_process(flags)?;
    let callback = config.callback_url(config.listen.port());
    let (_, secret_ok) = describe_secret(&config);
    for (key, value) in rows(&config) {
        println!("{key:<KEY_WIDTH$}{value}");
    }
    println!(
        "\nRegister this redirect URL for your app on https://developers.kite.trade: {callback}"
    );
    for warning in config.readiness.warnings() {
        println!("\nwarning: {warning}");
    }
    for warning in config.secret_file_warnings() {
        println!("\nwarning: {warning}");
    }
    if let Some(warning) = config
        .public_url
        .as_ref()
        .and_then(|u| u.plain_http_warning())
    {
        println!("\nwarning: {warning}");
    }
    // A blank key is already `None`: the configuration trims and drops it.
    let key_ok = config.api_key.is_some();
    if key_ok && secret_ok {
        return Ok(ExitCode::SUCCESS);
    }
    let missing = match (key_ok, secret_ok) {
        (false, false) => "the api key and the api secret are",
        (false, true) => "the api key is",
        _ => "the api secret is",
    };
    eprintln!(
        "kited: not configured: {missing} missing; run `kitectl{} setup` (or set kite.api_key or \
         KITE_API_KEY, and put the secret in {})",
        profile_flag(&config.profile),
        config.profile_secret_file.display()
    );
    Ok(ExitCode::FAILURE)
}

/// The rows `check-config` prints: the profile, the config file and the secret's source, then
/// one row per key of the file's shape (from [`view`], so a new key cannot be left out), then
/// the callback URL.
fn rows(config: &Config) -> Vec<(String, String)> {
    let file = if config.config_file_found {
        ""
    } else {
        " (not found; defaults used)"
    };
    let mut rows = vec![
        ("profile".to_string(), config.profile.clone()),
        (
            "config file".to_string(),
            format!("{}{file}", config.config_path.display()),
        ),
        ("kite.api_secret".to_string(), describe_secret(config).0),
    ];
    let view = serde_json::to_value(view(config)).expect("the file's shape serialises to JSON");
    key_rows("", &view, config, &mut rows);
    rows.push((
        "callback URL".to_string(),
        config.callback_url(config.listen.port()),
    ));
    rows
}

/// The resolved configuration in the file's shape, every table present and every key filled
/// (`None` only where the setting is truly absent). Struct literals without `..Default`, so a
/// key added to the shape does not compile until it is shown here.
fn view(config: &Config) -> File {
    File {
        kite: FileKite {
            api_key: config.api_key.clone(),
            api_secret_file: config
                .secret_source
                .configured_file()
                .map(Path::to_path_buf),
            api_root: Some(config.api_root.clone()),
            login_url: Some(config.login_url.clone()),
            timeout: Some(config.kite_timeout),
            user_id: config.expected_user_id.clone(),
        },
        http: FileHttp {
            listen: Some(config.listen.to_string()),
            listen_public_ok: Some(config.listen_public_ok),
            public_url: config.public_url.as_ref().map(ToString::to_string),
            public_listen: config.public_listen.as_ref().map(ToString::to_string),
            allowed_origins: config.allowed_origins.clone(),
            postbacks: Some(config.postbacks),
            exchange_api: Some(config.exchange_api),
        },
        ipc: FileIpc {
            socket: Some(config.socket.clone()),
        },
        store: FileStore {
            dir: Some(config.state_dir.clone()),
        },
        expiry: FileExpiry {
            cutoff: Some(config.expiry.cutoff.format("%H:%M").to_string()),
            warn_before: Some(
                config
                    .expiry
                    .warn_before
                    .iter()
                    .map(|d| humantime_serde::Serde::from(*d))
                    .collect(),
            ),
            reminder: Some(config.expiry.reminder.as_str().to_string()),
            holidays: config
                .expiry
                .holidays
                .iter()
                .map(ToString::to_string)
                .collect(),
            verify_every: Some(config.expiry.verify_every),
        },
        notify: FileNotify {
            desktop: Some(config.notify.desktop),
            command: Some(config.notify.command.clone()),
            open_command: Some(config.notify.open_command.clone()),
        },
        hooks: FileHooks {
            env_file: config.env_file.clone(),
        },
        push: FilePush::view(&config.push),
        readiness: FileReadiness::view(&config.readiness),
        sinks: FileSinks::view(&config.sinks),
    }
}

/// One row per leaf of `value` (keys sorted within each table); a table with a one-line
/// summary gets that row first, and a few keys are said in words rather than as raw values.
fn key_rows(
    prefix: &str,
    value: &serde_json::Value,
    config: &Config,
    rows: &mut Vec<(String, String)>,
) {
    let serde_json::Value::Object(table) = value else {
        return;
    };
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if let Some(summary) = describe_table(&key, config) {
            rows.push((key.clone(), summary));
        } else if !value.is_object() {
            let shown = describe_key(&key, config).unwrap_or_else(|| plain(value));
            rows.push((key.clone(), shown));
        }
        key_rows(&key, value, config, rows);
    }
}

/// A value as the file would say it, without JSON's quotes; a list joined with commas.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "(none)".into(),
        serde_json::Value::Array(items) if items.is_empty() => "(none)".into(),
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// The one-line summary of a table that is configured as a whole (or not at all).
fn describe_table(key: &str, config: &Config) -> Option<String> {
    match key {
        "push.telegram" => Some(describe_telegram(config)),
        "push.ntfy" => Some(describe_ntfy(config)),
        "sinks.redis" => Some(describe_redis(config)),
        _ => None,
    }
}

/// The keys said in words: where a secret comes from (never its value), what an absent
/// setting means, and the time zone of times.
fn describe_key(key: &str, config: &Config) -> Option<String> {
    let text = match key {
        "kite.api_key" => config.api_key.clone().unwrap_or_else(|| "missing".into()),
        "kite.user_id" => config
            .expected_user_id
            .clone()
            .unwrap_or_else(|| "(any)".into()),
        "http.public_url" => config
            .public_url
            .as_ref()
            .map_or_else(|| "(none: loopback only)".into(), ToString::to_string),
        "http.public_listen" => config.public_listen.as_ref().map_or_else(
            || "(none: the proxy would share http.listen)".into(),
            |listen| format!("{listen} (only the public routes, whatever Host says)"),
        ),
        "expiry.cutoff" => config.expiry.cutoff.format("%H:%M IST").to_string(),
        "expiry.reminder" => format!("{} (IST)", config.expiry.reminder.as_str()),
        "readiness.at" => config
            .readiness
            .at
            .format("%H:%M IST, trading days")
            .to_string(),
        "readiness.static_ips" => describe_static_ips(config),
        "readiness.ip_echo_url" if config.readiness.static_ips.is_empty() => {
            format!("{} (unused: no static_ips)", config.readiness.ip_echo_url)
        }
        "readiness.reminder_every" if config.readiness.reminder_every.is_zero() => {
            "0s (the reminder is sent once)".to_string()
        }
        "readiness.reminder_every" => format!(
            "{} (until 09:15 IST)",
            humantime::format_duration(config.readiness.reminder_every)
        ),
        _ => return None,
    };
    Some(text)
}

/// Every key of the file's shape (for the tests): the leaves of the view of `config`.
#[cfg(test)]
fn leaf_keys(prefix: &str, value: &serde_json::Value, keys: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(table) => {
            for (name, value) in table {
                let key = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                leaf_keys(&key, value, keys);
            }
        }
        _ => keys.push(prefix.to_string()),
    }
}

/// ` --profile NAME` for a command line, or nothing for the default profile.
fn profile_flag(profile: &str) -> String {
    if profile == kite_proto::socket_path::DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" --profile {profile}")
    }
}

/// The `kite.api_secret` row (where the secret comes from, never its value) and whether it is
/// usable.
fn describe_secret(config: &Config) -> (String, bool) {
    // A blank secret never gets here: the configuration already calls it missing.
    match &config.secret_source {
        SecretSource::Missing if config.profile_secret_file.exists() => (
            format!(
                "missing ({} is empty)",
                config.profile_secret_file.display()
            ),
            false,
        ),
        SecretSource::Missing => ("missing".to_string(), false),
        source => (source.to_string(), true),
    }
}

/// The `push.telegram` row: the chat and where the bot token comes from, never the token.
fn describe_telegram(config: &Config) -> String {
    match &config.push.telegram {
        Some(t) => format!(
            "chat {} via {}; bot token {}",
            t.chat_id, t.api_root, t.token_source
        ),
        None => "(not configured)".into(),
    }
}

/// The `readiness.static_ips` row: the addresses, or that the `ip` check is off.
fn describe_static_ips(config: &Config) -> String {
    if config.readiness.static_ips.is_empty() {
        return "(none: the ip check is off)".into();
    }
    config
        .readiness
        .static_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `push.ntfy` row: the topic URL and whether an access token is set.
fn describe_ntfy(config: &Config) -> String {
    match &config.push.ntfy {
        Some(n) => format!("{}; access token {}", n.url, n.token_source),
        None => "(not configured)".into(),
    }
}

/// The `sinks.redis` row: the URL (never with a password), user, key, channel, and whether a
/// password is set and where from.
fn describe_redis(config: &Config) -> String {
    match &config.sinks.redis {
        Some(r) => format!(
            "{}; user {}; key {}; channel {}; password {}{}",
            crate::config::sinks::redacted_url(&r.url),
            r.username.as_deref().unwrap_or("(default)"),
            r.key,
            r.channel,
            r.password_source,
            r.ca_file
                .as_ref()
                .map(|p| format!("; CA {}", p.display()))
                .unwrap_or_default()
        ),
        None => "(not configured)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with every optional table present, so the view holds every key.
    fn full_config(dir: &Path) -> Config {
        let path = dir.join("full.toml");
        std::fs::write(
            &path,
            "[push.telegram]\nchat_id = 42\n[push.ntfy]\nurl = \"https://ntfy.example/t\"\n\
             [sinks.redis]\nurl = \"redis://127.0.0.1:6379/0\"\n",
        )
        .unwrap();
        let flags = Flags {
            profile: "default".into(),
            config: Some(path),
            ..Flags::default()
        };
        let home = dir.to_str().unwrap().to_string();
        Config::load(&flags, &move |key| match key {
            "HOME" => Some(home.clone()),
            "KITE_API_KEY" => Some("key1".into()),
            "KITED_TELEGRAM_BOT_TOKEN" => Some("123:abc".into()),
            _ => None,
        })
        .unwrap()
    }

    /// The example configuration in the README (the TOML block that names the config file).
    fn readme_example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start = readme
            .find("```toml\n# ~/.config/kited/")
            .expect("the README has the example configuration");
        let block = &readme[start + "```toml\n".len()..];
        block[..block.find("```").unwrap()].to_string()
    }

    #[test]
    fn every_key_is_a_row_and_in_the_readme_example() {
        let dir = tempfile::tempdir().unwrap();
        let config = full_config(dir.path());
        let mut keys = Vec::new();
        leaf_keys("", &serde_json::to_value(view(&config)).unwrap(), &mut keys);
        // Spot checks that the shape really was walked, tables and all.
        for key in [
            "kite.api_key",
            "http.exchange_api",
            "push.telegram.chat_id",
            "push.ntfy.token_file",
            "sinks.redis.ca_file",
            "readiness.reminder_every",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} not in {keys:?}");
        }

        let rows = rows(&config);
        let example = readme_example();
        let parsed: File = toml::from_str(&example).expect("the README example is a valid file");
        let mut example_keys = Vec::new();
        leaf_keys(
            "",
            &serde_json::to_value(parsed).unwrap(),
            &mut example_keys,
        );
        let written: toml::Table = toml::from_str(&example).unwrap();
        let mut written_keys = Vec::new();
        leaf_keys(
            "",
            &serde_json::to_value(written).unwrap(),
            &mut written_keys,
        );
        for key in &keys {
            assert!(
                rows.iter().any(|(row, _)| row == key),
                "check-config has no {key} row"
            );
            assert!(
                written_keys.contains(key),
                "the README's example configuration does not show {key}"
            );
        }
        assert_eq!(example_keys.len(), keys.len());
        for (row, _) in &rows {
            assert!(row.len() < KEY_WIDTH, "{row} is wider than the key column");
        }
    }

    #[test]
    fn secrets_are_said_as_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows(&full_config(dir.path()));
        let row = |key: &str| {
            rows.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {key} row"))
        };
        assert_eq!(row("kite.api_secret"), "missing");
        assert_eq!(row("kite.api_key"), "key1");
        assert!(row("push.telegram").contains("bot token set (KITED_TELEGRAM_BOT_TOKEN)"));
        assert!(!rows.iter().any(|(_, v)| v.contains("123:abc")));
        assert_eq!(row("push.telegram.chat_id"), "42");
        assert_eq!(row("sinks.redis.password_file"), "(none)");
    }
}
