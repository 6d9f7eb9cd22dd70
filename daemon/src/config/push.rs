//! The `[push]` config tables: which events go out, and the Telegram and ntfy channels with
//! their tokens (from a file, systemd's credentials directory, or the environment).

use crate::config::env::Env;
use crate::config::error::ConfigError;
use crate::config::secrets::{self, SecretPlaces, SecretSource};
use crate::token::Secret;
use kite_proto::event::EventName;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Whether a channel may carry `name`: every event but `env_file_failed` (a local file's
/// trouble, said on the desktop and in the log).
fn pushable(name: EventName) -> bool {
    name != EventName::EnvFileFailed
}

/// What a phone hears about by default: every token event and the morning's readiness, no
/// order chatter.
fn default_event(name: EventName) -> bool {
    pushable(name) && name != EventName::OrderUpdate
}

pub const DEFAULT_TELEGRAM_API_ROOT: &str = "https://api.telegram.org";
/// The names systemd's `LoadCredential=` gives the channel tokens.
pub const TELEGRAM_CREDENTIAL: &str = "telegram-bot-token";
pub const NTFY_CREDENTIAL: &str = "ntfy-token";
pub const TELEGRAM_TOKEN_ENV: &str = "KITED_TELEGRAM_BOT_TOKEN";
pub const NTFY_TOKEN_ENV: &str = "KITED_NTFY_TOKEN";
/// What each channel's required setting is, said when it is missing.
const CHAT_ID_HELP: &str = "the chat the bot writes to (see getUpdates in the operations guide)";
const NTFY_URL_HELP: &str = "the server and topic, like https://ntfy.sh/kite-7f3a9c";

/// The resolved `[push]` section.
#[derive(Debug, Clone, Default)]
pub struct PushSettings {
    /// The events to send.
    pub events: Vec<EventName>,
    pub telegram: Option<TelegramSettings>,
    pub ntfy: Option<NtfySettings>,
}

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub bot_token: Secret,
    pub token_source: SecretSource,
    pub chat_id: String,
    /// No trailing slash.
    pub api_root: String,
}

#[derive(Debug, Clone)]
pub struct NtfySettings {
    /// Server and topic: `https://ntfy.sh/kite-7f3a9c`.
    pub url: String,
    pub token: Option<Secret>,
    pub token_source: SecretSource,
}

impl PushSettings {
    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        self.telegram.is_some() || self.ntfy.is_some()
    }

    pub fn wants(&self, event: EventName) -> bool {
        self.events.contains(&event)
    }

    /// Resolves the file's `[push]` tables; a channel without its token (or chat id) is an error.
    pub fn resolve(file: &FilePush, env: &Env) -> Result<PushSettings, ConfigError> {
        let events = match &file.events {
            Some(list) => list
                .iter()
                .map(|text| {
                    EventName::parse(text)
                        .filter(|name| pushable(*name))
                        .ok_or_else(|| ConfigError::Invalid {
                            key: "push.events",
                            message: format!(
                                "{text:?} is not an event; known: {}",
                                EventName::ALL
                                    .into_iter()
                                    .filter(|name| pushable(*name))
                                    .map(EventName::as_str)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => EventName::ALL
                .into_iter()
                .filter(|name| default_event(*name))
                .collect(),
        };
        let telegram = file
            .telegram
            .as_ref()
            .map(|t| resolve_telegram(t, env))
            .transpose()?;
        let ntfy = file
            .ntfy
            .as_ref()
            .map(|n| resolve_ntfy(n, env))
            .transpose()?;
        Ok(PushSettings {
            events,
            telegram,
            ntfy,
        })
    }
}

fn resolve_telegram(file: &FileTelegram, env: &Env) -> Result<TelegramSettings, ConfigError> {
    let chat_id = file.chat_id.as_ref().map(ChatId::text);
    let chat_id = required("push.telegram.chat_id", chat_id.as_deref(), CHAT_ID_HELP)?.to_string();
    let api_root = checked_url(
        "push.telegram.api_root",
        file.api_root
            .as_deref()
            .unwrap_or(DEFAULT_TELEGRAM_API_ROOT),
    )?;
    let (token, token_source) = secrets::resolve(
        &SecretPlaces {
            var: TELEGRAM_TOKEN_ENV,
            file_key: "push.telegram.bot_token_file",
            file: file.bot_token_file.as_deref(),
            credential: TELEGRAM_CREDENTIAL,
            profile_file: None,
        },
        env,
    )?;
    let Some(bot_token) = token else {
        return Err(ConfigError::Invalid {
            key: "push.telegram.bot_token_file",
            message: format!(
                "no Telegram bot token: set bot_token_file, load the credential \
                 {TELEGRAM_CREDENTIAL} (systemd) or set {TELEGRAM_TOKEN_ENV}"
            ),
        });
    };
    Ok(TelegramSettings {
        bot_token,
        token_source,
        chat_id,
        api_root,
    })
}

fn resolve_ntfy(file: &FileNtfy, env: &Env) -> Result<NtfySettings, ConfigError> {
    let url = required("push.ntfy.url", file.url.as_deref(), NTFY_URL_HELP)?;
    let url = checked_url("push.ntfy.url", url)?;
    let (token, token_source) = secrets::resolve(
        &SecretPlaces {
            var: NTFY_TOKEN_ENV,
            file_key: "push.ntfy.token_file",
            file: file.token_file.as_deref(),
            credential: NTFY_CREDENTIAL,
            profile_file: None,
        },
        env,
    )?;
    Ok(NtfySettings {
        url,
        token,
        token_source,
    })
}

/// `value` trimmed, or an error saying `key` is missing and what it is for when it is empty.
fn required<'a>(
    key: &'static str,
    value: Option<&'a str>,
    what: &str,
) -> Result<&'a str, ConfigError> {
    match value.map(str::trim) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ConfigError::Invalid {
            key,
            message: format!("is missing: {what}"),
        }),
    }
}

/// An https URL without a trailing slash; plain http only to this machine (a local relay or a
/// test server). Over plain http anyone on the path would read the channel's token (Telegram
/// carries it in the URL) and every login link, so kited refuses rather than warns.
fn checked_url(key: &'static str, text: &str) -> Result<String, ConfigError> {
    let text = text.trim().trim_end_matches('/');
    let invalid = |message: String| ConfigError::Invalid { key, message };
    match url::Url::parse(text) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(text.to_string()),
        Ok(url) if url.scheme() == "http" && url.host().is_some() => {
            if is_loopback_host(&url) {
                Ok(text.to_string())
            } else {
                Err(invalid(format!(
                    "{text:?} is plain http:// to another machine: the token and login links \
                     would cross the network unencrypted; use https:// (http:// is accepted \
                     only for localhost, 127.0.0.1 and ::1)"
                )))
            }
        }
        _ => Err(invalid(format!("{text:?} is not an https:// URL"))),
    }
}

/// Whether `url` names this machine: `localhost` or a loopback address.
pub fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `[push]` as written in the TOML file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilePush {
    events: Option<Vec<String>>,
    telegram: Option<FileTelegram>,
    ntfy: Option<FileNtfy>,
}

impl FilePush {
    /// The resolved settings in the file's shape, every key filled (a token file only when the
    /// token came from one), for `check-config`.
    pub fn view(settings: &PushSettings) -> FilePush {
        FilePush {
            events: Some(
                settings
                    .events
                    .iter()
                    .map(|name| name.as_str().to_string())
                    .collect(),
            ),
            telegram: settings.telegram.as_ref().map(|t| FileTelegram {
                bot_token_file: t.token_source.configured_file().map(Path::to_path_buf),
                chat_id: Some(ChatId::Text(t.chat_id.clone())),
                api_root: Some(t.api_root.clone()),
            }),
            ntfy: settings.ntfy.as_ref().map(|n| FileNtfy {
                url: Some(n.url.clone()),
                token_file: n.token_source.configured_file().map(Path::to_path_buf),
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileTelegram {
    bot_token_file: Option<PathBuf>,
    chat_id: Option<ChatId>,
    api_root: Option<String>,
}

/// Telegram chat ids are numbers (negative for groups) or `@channelname`; TOML may hold either.
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum ChatId {
    Number(i64),
    Text(String),
}

impl ChatId {
    /// The id as Telegram's API takes it: text either way.
    fn text(&self) -> String {
        match self {
            ChatId::Number(n) => n.to_string(),
            ChatId::Text(text) => text.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct FileNtfy {
    url: Option<String>,
    token_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(toml_text: &str, vars: &[(&str, &str)]) -> Result<PushSettings, ConfigError> {
        #[derive(Deserialize)]
        struct Wrapper {
            push: FilePush,
        }
        let file: Wrapper = toml::from_str(toml_text).unwrap();
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PushSettings::resolve(&file.push, &move |k| vars.get(k).cloned())
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://ntfy.example/t",
            "http://127.0.0.1:8080/t",
            "http://localhost/t",
            "http://[::1]:9/t",
        ] {
            assert!(checked_url("push.ntfy.url", ok).is_ok(), "{ok}");
        }
        for refused in ["http://ntfy.example/t", "http://10.0.0.2/t", "ftp://x/t"] {
            let error = checked_url("push.ntfy.url", refused).expect_err(refused);
            assert!(error.to_string().contains("push.ntfy.url"), "{error}");
        }
    }

    #[test]
    fn defaults_and_channels() {
        let settings = resolve("[push]\n", &[]).unwrap();
        assert!(!settings.any());
        assert!(settings.wants(EventName::TokenNew) && !settings.wants(EventName::OrderUpdate));
        assert!(resolve("[push]\nevents = [\"env_file_failed\"]\n", &[]).is_err());
        let settings = resolve(
            "[push.telegram]\nchat_id = 123456789\n[push.ntfy]\nurl = \"https://ntfy.sh/t/\"\n",
            &[("KITED_TELEGRAM_BOT_TOKEN", "123:abc")],
        )
        .unwrap();
        let telegram = settings.telegram.unwrap();
        assert_eq!(telegram.chat_id, "123456789");
        assert_eq!(telegram.bot_token.expose(), "123:abc");
        assert_eq!(telegram.api_root, DEFAULT_TELEGRAM_API_ROOT);
        let ntfy = settings.ntfy.unwrap();
        assert_eq!(ntfy.url, "https://ntfy.sh/t");
        assert!(ntfy.token.is_none());
        assert_eq!(ntfy.token_source, SecretSource::Missing);
    }

    #[test]
    fn tokens_from_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TELEGRAM_CREDENTIAL), "42:xyz\n").unwrap();
        std::fs::write(dir.path().join(NTFY_CREDENTIAL), "tk_n\n").unwrap();
        let dir_text = dir.path().to_str().unwrap();
        let settings = resolve(
            "[push.telegram]\nchat_id = \"@kite\"\n[push.ntfy]\nurl = \"https://ntfy.sh/t\"\n",
            &[("CREDENTIALS_DIRECTORY", dir_text)],
        )
        .unwrap();
        assert_eq!(settings.telegram.unwrap().bot_token.expose(), "42:xyz");
        assert_eq!(settings.ntfy.unwrap().token.unwrap().expose(), "tk_n");
    }

    #[test]
    fn token_files_are_read_trimmed_and_beat_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bot");
        std::fs::write(&file, "42:fromfile\n").unwrap();
        std::fs::write(dir.path().join(TELEGRAM_CREDENTIAL), "42:fromcred\n").unwrap();
        let toml_text = format!(
            "[push.telegram]\nchat_id = 1\nbot_token_file = \"{}\"\n",
            file.display()
        );
        let dir_text = dir.path().to_str().unwrap();
        let telegram = resolve(&toml_text, &[("CREDENTIALS_DIRECTORY", dir_text)])
            .unwrap()
            .telegram
            .unwrap();
        assert_eq!(telegram.bot_token.expose(), "42:fromfile");
        assert_eq!(
            telegram.token_source,
            SecretSource::File {
                key: "push.telegram.bot_token_file",
                path: file
            }
        );
        // The environment beats both; a blank credential (the units' fallback) is no token.
        let telegram = resolve(&toml_text, &[("KITED_TELEGRAM_BOT_TOKEN", "42:fromenv")])
            .unwrap()
            .telegram
            .unwrap();
        assert_eq!(telegram.bot_token.expose(), "42:fromenv");
        std::fs::write(dir.path().join(NTFY_CREDENTIAL), "\n").unwrap();
        let ntfy = resolve(
            "[push.ntfy]\nurl = \"https://ntfy.sh/t\"\n",
            &[("CREDENTIALS_DIRECTORY", dir_text)],
        )
        .unwrap()
        .ntfy
        .unwrap();
        assert!(ntfy.token.is_none());
        assert_eq!(ntfy.token_source, SecretSource::Missing);
    }

    #[test]
    fn a_channel_without_its_token_or_chat_is_an_error() {
        let err = resolve("[push.telegram]\nchat_id = 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("push.telegram.bot_token_file"), "{err}");
        let err = resolve("[push.telegram]\n", &[("KITED_TELEGRAM_BOT_TOKEN", "1:a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("push.telegram.chat_id"), "{err}");
        let err = resolve("[push.ntfy]\n", &[]).unwrap_err().to_string();
        assert!(err.contains("push.ntfy.url"), "{err}");
        let err = resolve(
            "[push.ntfy]\nurl = \"https://ntfy.sh/t\"\ntoken_file = \"/nonexistent/t\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/t"), "{err}");
        let err = resolve("[push]\nevents = [\"token_nwe\"]\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_nwe"), "{err}");
    }
}
