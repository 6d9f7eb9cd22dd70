//! `kited check-config`: the resolved settings (the secret only as set or missing), the callback
//! URL to register with Kite, and whether kited can log in.

use crate::config::{Config, Flags, SecretSource};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `kited check-config`: the resolved settings (secret as set/missing) and the callback URL.
pub fn run(flags: &Flags) -> anyhow::Result<ExitCode> {
    let config = Config::from_process(flags)?;
    let callback = config.callback_url(config.listen.port());
    let (secret, secret_ok, secret_path) = describe_secret(&config);
    let file = if config.config_file_found {
        ""
    } else {
        " (not found; defaults used)"
    };
    let rows = [
        ("profile", config.profile.clone()),
        (
            "config file",
            format!("{}{file}", config.config_path.display()),
        ),
        (
            "kite.api_key",
            config.api_key.clone().unwrap_or_else(|| "missing".into()),
        ),
        ("kite.api_secret", secret),
        ("kite.api_root", config.api_root.clone()),
        ("kite.login_url", config.login_url.clone()),
        (
            "kite.timeout",
            humantime::format_duration(config.kite_timeout).to_string(),
        ),
        (
            "kite.user_id",
            config
                .expected_user_id
                .clone()
                .unwrap_or_else(|| "(any)".into()),
        ),
        ("http.listen", config.listen.to_string()),
        ("http.listen_public_ok", config.listen_public_ok.to_string()),
        (
            "http.public_url",
            config
                .public_url
                .as_ref()
                .map_or_else(|| "(none: loopback only)".into(), ToString::to_string),
        ),
        (
            "http.public_listen",
            config.public_listen.as_ref().map_or_else(
                || "(none: the proxy would share http.listen)".into(),
                |listen| format!("{listen} (only the public routes, whatever Host says)"),
            ),
        ),
        ("http.allowed_origins", config.allowed_origins.join(", ")),
        ("http.postbacks", config.postbacks.to_string()),
        ("ipc.socket", config.socket.display().to_string()),
        ("store.dir", config.state_dir.display().to_string()),
        (
            "expiry.cutoff",
            config.expiry.cutoff.format("%H:%M IST").to_string(),
        ),
        (
            "expiry.warn_before",
            config
                .expiry
                .warn_before
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "expiry.reminder",
            format!("{} (IST)", config.expiry.reminder.as_str()),
        ),
        (
            "expiry.holidays",
            config
                .expiry
                .holidays
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "expiry.verify_every",
            humantime::format_duration(config.expiry.verify_every).to_string(),
        ),
        ("notify.desktop", config.notify.desktop.to_string()),
        ("notify.command", config.notify.command.join(" ")),
        ("notify.open_command", config.notify.open_command.join(" ")),
        (
            "hooks.env_file",
            config
                .env_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("push.events", config.push.events.join(", ")),
        ("push.telegram", describe_telegram(&config)),
        ("push.ntfy", describe_ntfy(&config)),
        (
            "readiness.at",
            config
                .readiness
                .at
                .format("%H:%M IST, trading days")
                .to_string(),
        ),
        ("readiness.static_ips", describe_static_ips(&config)),
        (
            "readiness.ip_echo_url",
            if config.readiness.static_ips.is_empty() {
                format!("{} (unused: no static_ips)", config.readiness.ip_echo_url)
            } else {
                config.readiness.ip_echo_url.to_string()
            },
        ),
        (
            "readiness.reminder_every",
            if config.readiness.reminder_every.is_zero() {
                "0s (the reminder is sent once)".to_string()
            } else {
                format!(
                    "{} (until 09:15 IST)",
                    humantime::format_duration(config.readiness.reminder_every)
                )
            },
        ),
        ("sinks.redis", describe_redis(&config)),
        ("callback URL", callback.clone()),
    ];
    for (key, value) in rows {
        println!("{key:<22} {value}");
    }
    println!(
        "\nRegister this redirect URL for your app on https://developers.kite.trade: {callback}"
    );
    for warning in config.readiness.warnings() {
        println!("\nwarning: {warning}");
    }
    if let Some(path) = secret_path {
        if let Some(warning) = loose_permissions(&path) {
            println!("\nwarning: {warning}");
        }
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

/// ` --profile NAME` for a command line, or nothing for the default profile.
fn profile_flag(profile: &str) -> String {
    if profile == kite_proto::socket_path::DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" --profile {profile}")
    }
}

/// The `kite.api_secret` row (where the secret comes from, never its value), whether it is
/// usable, and the file it lives in.
fn describe_secret(config: &Config) -> (String, bool, Option<PathBuf>) {
    // A blank secret never gets here: the configuration already calls it missing.
    match &config.secret_source {
        SecretSource::Env => ("set (KITE_API_SECRET)".to_string(), true, None),
        SecretSource::File(p) => (
            format!("set (kite.api_secret_file {})", p.display()),
            true,
            Some(p.clone()),
        ),
        SecretSource::Credential(p) => (
            format!("set (systemd credential {})", p.display()),
            true,
            None,
        ),
        SecretSource::ProfileFile(p) => (
            format!("set (the profile's secret file {})", p.display()),
            true,
            Some(p.clone()),
        ),
        SecretSource::Missing if config.profile_secret_file.exists() => (
            format!(
                "missing ({} is empty)",
                config.profile_secret_file.display()
            ),
            false,
            None,
        ),
        SecretSource::Missing => ("missing".to_string(), false, None),
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

/// A warning when a secret file can be read by other users.
fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} can be read by other users (mode {mode:04o}): chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_secret_files_are_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_permissions(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = loose_permissions(&path).unwrap();
        assert!(
            warning.contains("0644") && warning.contains("chmod 600"),
            "{warning}"
        );
    }
}
