//! The `[sinks.redis]` table: where kited publishes the token for programs on other hosts and in
//! containers, the ACL user and its password (never in the URL), the key and channel names.

use crate::config::env::Env;
use crate::config::error::ConfigError;
use crate::config::secrets::{self, SecretPlaces, SecretSource};
use crate::token::Secret;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The name systemd's `LoadCredential=` gives the Redis password.
pub const REDIS_CREDENTIAL: &str = "redis-password";
/// The environment variable that may carry the Redis password (never passed to child processes).
pub const REDIS_PASSWORD_ENV: &str = "KITED_REDIS_PASSWORD";
/// The key's default name; `{profile}` becomes the profile name, so profiles never collide.
pub const DEFAULT_REDIS_KEY: &str = "kite:{profile}:token";
/// The channel's default name, beside the key.
pub const DEFAULT_REDIS_CHANNEL: &str = "kite:{profile}:events";

/// The resolved `[sinks]` section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkSettings {
    pub redis: Option<RedisSettings>,
}

/// The resolved `[sinks.redis]` table. `Debug` never shows the password (a [`Secret`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    /// As written, without credentials: `redis://host:6379/0` or `rediss://...`.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_source: SecretSource,
    /// With `{profile}` already replaced.
    pub key: String,
    pub channel: String,
    /// PEM certificates to trust instead of the public roots (a private CA), read at load.
    pub ca_file: Option<PathBuf>,
    pub ca_pem: Option<Vec<u8>>,
}

impl SinkSettings {
    pub fn resolve(
        file: &FileSinks,
        profile: &str,
        env: &Env,
    ) -> Result<SinkSettings, ConfigError> {
        let redis = file
            .redis
            .as_ref()
            .map(|r| resolve_redis(r, profile, env))
            .transpose()?;
        Ok(SinkSettings { redis })
    }
}

/// `text` with the password of a URL (if any) replaced, for messages and `check-config`.
pub fn redacted_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("REDACTED"));
            url.to_string()
        }
        Ok(_) => text.to_string(),
        Err(_) => "(not a URL)".to_string(),
    }
}

fn resolve_redis(file: &FileRedis, profile: &str, env: &Env) -> Result<RedisSettings, ConfigError> {
    let invalid = |key: &'static str, message: String| ConfigError::Invalid { key, message };
    let text = match file.url.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => text,
        _ => {
            return Err(invalid(
                "sinks.redis.url",
                "is missing: the server, like redis://10.0.0.5:6379/0 or rediss://host:6380/0"
                    .into(),
            ))
        }
    };
    let url = url::Url::parse(text).map_err(|e| {
        invalid(
            "sinks.redis.url",
            format!("{} is not a URL ({e})", redacted_url(text)),
        )
    })?;
    if url.password().is_some() {
        return Err(invalid(
            "sinks.redis.url",
            format!(
                "{} carries a password: remove it from the URL and put it in \
                 sinks.redis.password_file, the credential {REDIS_CREDENTIAL} (systemd) or \
                 {REDIS_PASSWORD_ENV}",
                redacted_url(text)
            ),
        ));
    }
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(invalid(
                "sinks.redis.url",
                format!("{other}:// is not redis:// or rediss://"),
            ))
        }
    };
    let host = match url.host_str() {
        Some(host) if !host.is_empty() => host.trim_matches(['[', ']']).to_string(),
        _ => return Err(invalid("sinks.redis.url", format!("{text} names no host"))),
    };
    let port = url.port().unwrap_or(6379);
    let db = match url.path().trim_matches('/') {
        "" => 0,
        path => path
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| {
                invalid(
                    "sinks.redis.url",
                    format!("{path:?} is not a database number (the path is /0, /1, ...)"),
                )
            })?,
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "sinks.redis.url",
            "takes no ?query or #fragment: use the keys of [sinks.redis]".into(),
        ));
    }
    let username = file
        .username
        .clone()
        .or_else(|| Some(url.username().to_string()))
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty());
    let (password, password_source) = secrets::resolve(
        &SecretPlaces {
            var: REDIS_PASSWORD_ENV,
            file_key: "sinks.redis.password_file",
            file: file.password_file.as_deref(),
            credential: REDIS_CREDENTIAL,
            profile_file: None,
        },
        env,
    )?;
    let name = |key: &'static str, value: Option<&str>, default: &str| {
        let value = value
            .unwrap_or(default)
            .trim()
            .replace("{profile}", profile);
        match value.is_empty() {
            true => Err(invalid(key, "is empty".into())),
            false => Ok(value),
        }
    };
    let key = name("sinks.redis.key", file.key.as_deref(), DEFAULT_REDIS_KEY)?;
    let channel = name(
        "sinks.redis.channel",
        file.channel.as_deref(),
        DEFAULT_REDIS_CHANNEL,
    )?;
    let ca_pem = match &file.ca_file {
        Some(path) => {
            if !tls {
                return Err(invalid(
                    "sinks.redis.ca_file",
                    "applies only to rediss:// URLs".into(),
                ));
            }
            let pem = std::fs::read(path).map_err(|source| ConfigError::SecretFile {
                key: "sinks.redis.ca_file",
                path: path.clone(),
                source,
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(invalid(
                    "sinks.redis.ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Some(pem)
        }
        None => None,
    };
    let mut shown = url.clone();
    let _ = shown.set_username("");
    Ok(RedisSettings {
        url: shown.to_string(),
        host,
        port,
        db,
        tls,
        username,
        password,
        password_source,
        key,
        channel,
        ca_file: file.ca_file.clone(),
        ca_pem,
    })
}

/// `[sinks]` as written in the TOML file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinks {
    redis: Option<FileRedis>,
}

impl FileSinks {
    /// The resolved settings in the file's shape, every key filled (the URL without a password,
    /// the password file only when the password came from one), for `check-config`.
    pub fn view(settings: &SinkSettings) -> FileSinks {
        FileSinks {
            redis: settings.redis.as_ref().map(|r| FileRedis {
                url: Some(redacted_url(&r.url)),
                username: r.username.clone(),
                password_file: r.password_source.configured_file().map(Path::to_path_buf),
                key: Some(r.key.clone()),
                channel: Some(r.channel.clone()),
                ca_file: r.ca_file.clone(),
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileRedis {
    url: Option<String>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    key: Option<String>,
    channel: Option<String>,
    ca_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(toml_text: &str, vars: &[(&str, &str)]) -> Result<SinkSettings, ConfigError> {
        #[derive(Deserialize)]
        struct Wrapper {
            sinks: FileSinks,
        }
        let file: Wrapper = toml::from_str(toml_text).unwrap();
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SinkSettings::resolve(&file.sinks, "prod", &move |k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_and_names() {
        let redis = resolve(
            "[sinks.redis]\nurl = \"redis://10.0.0.5/2\"\nusername = \"kited\"\n",
            &[(REDIS_PASSWORD_ENV, "pw\n")],
        )
        .unwrap()
        .redis
        .unwrap();
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.db),
            ("10.0.0.5", 6379, 2)
        );
        assert!(!redis.tls);
        assert_eq!(redis.key, "kite:prod:token");
        assert_eq!(redis.channel, "kite:prod:events");
        assert_eq!(redis.username.as_deref(), Some("kited"));
        assert_eq!(redis.password.as_ref().map(Secret::expose), Some("pw"));
        assert!(!format!("{redis:?}").contains("\"pw\""));
        let none = resolve("[sinks]\n", &[]).unwrap();
        assert!(none.redis.is_none());
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_repeated() {
        let err = resolve(
            "[sinks.redis]\nurl = \"redis://kited:hunter2@10.0.0.5:6379/0\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sinks.redis.url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        for bad in [
            "http://h/0",
            "redis://h/x",
            "redis:///0",
            "redis://h/0?db=1",
        ] {
            let err = resolve(&format!("[sinks.redis]\nurl = \"{bad}\"\n"), &[]);
            assert!(err.is_err(), "{bad}");
        }
        let err = resolve(
            "[sinks.redis]\nurl = \"redis://h\"\nca_file = \"/etc/ca.pem\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sinks.redis.ca_file"), "{err}");
    }
}
