//! Resolves one `Config` from flags, environment, the TOML file and defaults, in that order.

use crate::public::PublicUrl;
use crate::token::Secret;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kite's own clients give up after 7 s; so do we by default.
pub const DEFAULT_KITE_TIMEOUT: Duration = Duration::from_secs(7);
/// The seed's development port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8079";
pub const DEFAULT_API_ROOT: &str = "https://api.kite.trade";
pub const DEFAULT_LOGIN_URL: &str = "https://kite.zerodha.com/connect/login";
/// Weekdays at 08:45 IST: half an hour before the pre-open session, time to log in calmly.
pub const DEFAULT_REMINDER: &str = "0 45 8 * * Mon-Fri";
/// The warnings before the cutoff: an hour ahead (time to plan) and a quarter of an hour (last call).
const DEFAULT_WARN_BEFORE: [Duration; 2] =
    [Duration::from_secs(60 * 60), Duration::from_secs(15 * 60)];
/// A profile call every half hour catches a token Kite killed early without hammering Kite.
pub const DEFAULT_VERIFY_EVERY: Duration = Duration::from_secs(30 * 60);
/// The file systemd's `LoadCredential=` puts the secret in.
pub const CREDENTIAL_NAME: &str = "kite-api-secret";
/// `$XDG_CONFIG_HOME/kited/PROFILE` + this: the secret file `kitectl setup` writes, the units'
/// `LoadCredential=` reads, and a kited started by hand reads last.
pub const PROFILE_SECRET_SUFFIX: &str = ".api-secret";

/// A problem with the configuration, named so a person can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key} is invalid: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("cannot read api secret file {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the command line said; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub profile: String,
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// Where the api secret came from (shown by `check-config`, never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env,
    File(PathBuf),
    Credential(PathBuf),
    /// `$XDG_CONFIG_HOME/kited/PROFILE.api-secret`, the last source.
    ProfileFile(PathBuf),
    Missing,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: String,
    pub config_path: PathBuf,
    pub config_file_found: bool,
    pub api_key: Option<String>,
    pub api_secret: Option<Secret>,
    pub secret_source: SecretSource,
    /// `$XDG_CONFIG_HOME/kited/PROFILE.api-secret`, whether or not it exists.
    pub profile_secret_file: PathBuf,
    pub api_root: String,
    pub login_url: String,
    pub kite_timeout: Duration,
    pub expected_user_id: Option<String>,
    pub listen: SocketAddr,
    /// Explicit public base URL (behind a TLS proxy); otherwise `http://127.0.0.1:<bound port>`.
    pub public_url: Option<PublicUrl>,
    pub allowed_origins: Vec<String>,
    pub postbacks: bool,
    /// `POST /api/token/generate-access-token` is served (to kited's own uid only).
    pub exchange_api: bool,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub expiry: Expiry,
    pub notify: Notify,
    pub env_file: Option<PathBuf>,
    pub testing: Testing,
}

/// Knobs that exist only so tests need not wait for 06:00 or for slow timeouts. They come from
/// the environment alone, are read with the rest of the configuration, and are logged when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Testing {
    /// `KITED_FAKE_NOW` (RFC 3339): the clock reads this when kited starts and runs on from it.
    pub fake_now: Option<DateTime<FixedOffset>>,
    /// `KITED_COMMAND_TIMEOUT_MS`: replaces the time `notify.command` may run.
    pub command_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub cutoff: NaiveTime,
    /// Sorted longest first: the first is the "expiring" window.
    pub warn_before: Vec<Duration>,
    pub reminder: Reminder,
    pub holidays: Vec<NaiveDate>,
    pub verify_every: Duration,
}

/// `expiry.reminder`: a cron expression (`croner` syntax, seconds field optional), in IST.
/// Parsed when the configuration is read, so a typo is a configuration error, never a silent
/// "no reminders".
#[derive(Clone, PartialEq)]
pub struct Reminder {
    /// As written, for `check-config` and logs.
    expression: String,
    cron: croner::Cron,
}

impl Reminder {
    pub fn parse(expression: &str) -> Result<Reminder, String> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| format!("{expression:?} is not a cron expression ({e})"))?;
        Ok(Reminder {
            expression: expression.to_string(),
            cron,
        })
    }

    /// The next time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&crate::clock::ist(after), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn as_str(&self) -> &str {
        &self.expression
    }
}

/// The expression alone: the parsed form is kilobytes of bit fields.
impl std::fmt::Debug for Reminder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reminder").field(&self.expression).finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notify {
    pub desktop: bool,
    pub command: Vec<String>,
    pub open_command: Vec<String>,
}

impl Config {
    /// `<public url>/auth/callback`; without `http.public_url`, loopback on `http_port` (the
    /// port really bound, which differs from `http.listen` when that says port 0).
    pub fn callback_url(&self, http_port: u16) -> String {
        match &self.public_url {
            Some(url) => format!("{url}/auth/callback"),
            None => format!("http://127.0.0.1:{http_port}/auth/callback"),
        }
    }

    /// How long `notify.command` may run.
    pub fn command_timeout(&self) -> Duration {
        self.testing
            .command_timeout
            .unwrap_or(crate::notify::COMMAND_TIMEOUT)
    }

    /// Whether kited can talk to Kite at all.
    pub fn is_configured(&self) -> bool {
        self.api_key.is_some() && self.api_secret.is_some()
    }

    /// The widest warning window (the "expiring" state starts there).
    pub fn expiring_window(&self) -> chrono::Duration {
        let widest = self.expiry.warn_before.first().copied().unwrap_or_default();
        chrono::Duration::from_std(widest).unwrap_or_default()
    }

    /// Resolves the configuration from `flags`, the environment seen through `env`, and the file.
    pub fn load(
        flags: &Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let profile = flags.profile.clone();
        let env = |key: &str| env(key).filter(|v| !v.is_empty());
        let home = env("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let xdg = |var: &str, fallback: &str| {
            env(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(fallback))
        };

        let config_dir = xdg("XDG_CONFIG_HOME", ".config").join("kited");
        let profile_secret_file = config_dir.join(format!("{profile}{PROFILE_SECRET_SUFFIX}"));
        let (config_path, explicit_config) = match (&flags.config, env("KITED_CONFIG")) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) => (PathBuf::from(path), true),
            (None, None) => (config_dir.join(format!("{profile}.toml")), false),
        };
        let (file, config_file_found) = match std::fs::read_to_string(&config_path) {
            Ok(text) => (parse_file(&config_path, &text)?, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit_config => {
                (File::default(), false)
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: config_path,
                    source,
                })
            }
        };

        let api_key = env("KITE_API_KEY")
            .or(file.kite.api_key.clone())
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty());
        let (api_secret, secret_source) = match resolve_secret(&file, &env, &profile_secret_file)? {
            // An empty secret can never produce a valid checksum: call it missing, loudly.
            (Some(secret), _) if secret.expose().trim().is_empty() => (None, SecretSource::Missing),
            resolved => resolved,
        };
        let api_root = env("KITE_API_ROOT")
            .or(file.kite.api_root.clone())
            .unwrap_or_else(|| DEFAULT_API_ROOT.into())
            .trim_end_matches('/')
            .to_string();
        let login_url = env("KITE_LOGIN_URL")
            .or(file.kite.login_url.clone())
            .unwrap_or_else(|| DEFAULT_LOGIN_URL.into());
        for (key, url) in [("kite.api_root", &api_root), ("kite.login_url", &login_url)] {
            url::Url::parse(url).map_err(|e| ConfigError::Invalid {
                key,
                message: format!("{url:?} is not a URL ({e})"),
            })?;
        }
        let kite_timeout = file.kite.timeout.unwrap_or(DEFAULT_KITE_TIMEOUT);
        if kite_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "kite.timeout",
                message: "must be longer than 0s".into(),
            });
        }

        let listen_text = flags
            .listen
            .clone()
            .or(env("KITED_LISTEN"))
            .or(file.http.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = parse_listen(&listen_text)?;
        let public_url = env("KITED_PUBLIC_URL")
            .or(file.http.public_url.clone())
            .map(|u| PublicUrl::parse(&u))
            .transpose()
            .map_err(|message| ConfigError::Invalid {
                key: "http.public_url",
                message,
            })?;

        let socket = flags
            .socket
            .clone()
            .or(env("KITED_SOCKET").map(PathBuf::from))
            .or(file.ipc.socket.clone())
            .unwrap_or_else(|| {
                kite_proto::socket_path::runtime_dir_in(env("XDG_RUNTIME_DIR").as_deref())
                    .join(format!("{profile}.sock"))
            });
        let state_dir = flags
            .state_dir
            .clone()
            .or(env("KITED_STATE_DIR").map(PathBuf::from))
            .or(file.store.dir.clone())
            .unwrap_or_else(|| {
                xdg("XDG_STATE_HOME", ".local/state")
                    .join("kited")
                    .join(&profile)
            });

        Ok(Config {
            profile,
            config_path,
            config_file_found,
            api_key,
            api_secret,
            secret_source,
            profile_secret_file,
            api_root,
            login_url,
            kite_timeout,
            expected_user_id: file.kite.user_id.clone(),
            listen,
            public_url,
            allowed_origins: file
                .http
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            postbacks: file.http.postbacks.unwrap_or(false),
            exchange_api: file.http.exchange_api.unwrap_or(true),
            socket,
            state_dir,
            expiry: resolve_expiry(&file.expiry)?,
            notify: Notify {
                desktop: file.notify.desktop.unwrap_or(true),
                command: file.notify.command.clone().unwrap_or_default(),
                open_command: file
                    .notify
                    .open_command
                    .clone()
                    .filter(|argv| !argv.is_empty())
                    .unwrap_or_else(|| default_open_command(env("INVOCATION_ID").is_some())),
            },
            env_file: file.hooks.env_file.clone(),
            testing: resolve_testing(&env)?,
        })
    }

    /// Loads from the real process environment.
    pub fn from_process(flags: &Flags) -> Result<Config, ConfigError> {
        Config::load(flags, &|key| std::env::var(key).ok())
    }
}

/// `xdg-open`; under systemd, through `systemd-run --user` so the browser starts outside
/// kited's sandbox (read-only home, private /tmp, no JIT memory) instead of inheriting it.
fn default_open_command(under_systemd: bool) -> Vec<String> {
    let argv: &[&str] = if under_systemd {
        &["systemd-run", "--user", "--quiet", "--collect", "xdg-open"]
    } else {
        &["xdg-open"]
    };
    argv.iter().map(|s| s.to_string()).collect()
}

fn parse_file(path: &Path, text: &str) -> Result<File, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string()
            + &e.span()
                .map(|span| format!(" (line {})", text[..span.start].matches('\n').count() + 1))
                .unwrap_or_default(),
    })
}

fn resolve_secret(
    file: &File,
    env: &dyn Fn(&str) -> Option<String>,
    profile_secret_file: &Path,
) -> Result<(Option<Secret>, SecretSource), ConfigError> {
    if let Some(secret) = env("KITE_API_SECRET") {
        return Ok((Some(Secret::new(secret.trim())), SecretSource::Env));
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|text| Secret::new(text.trim_end_matches(['\n', '\r'])))
            .map_err(|source| ConfigError::Secret {
                path: path.to_path_buf(),
                source,
            })
    };
    if let Some(path) = &file.kite.api_secret_file {
        return Ok((Some(read(path)?), SecretSource::File(path.clone())));
    }
    if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL_NAME);
        if path.exists() {
            return Ok((Some(read(&path)?), SecretSource::Credential(path)));
        }
    }
    if profile_secret_file.exists() {
        let secret = read(profile_secret_file)?;
        return Ok((
            Some(secret),
            SecretSource::ProfileFile(profile_secret_file.to_path_buf()),
        ));
    }
    Ok((None, SecretSource::Missing))
}

fn resolve_expiry(file: &FileExpiry) -> Result<Expiry, ConfigError> {
    let cutoff = match &file.cutoff {
        Some(text) => {
            NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| ConfigError::Invalid {
                key: "expiry.cutoff",
                message: format!("{text:?} is not a time like \"06:00\""),
            })?
        }
        None => crate::clock::default_cutoff(),
    };
    let mut warn_before = match &file.warn_before {
        Some(list) => list.iter().map(|d| **d).collect(),
        None => DEFAULT_WARN_BEFORE.to_vec(),
    };
    warn_before.sort_unstable_by(|a, b| b.cmp(a));
    warn_before.dedup();
    let reminder = Reminder::parse(file.reminder.as_deref().unwrap_or(DEFAULT_REMINDER)).map_err(
        |message| ConfigError::Invalid {
            key: "expiry.reminder",
            message,
        },
    )?;
    let holidays = file
        .holidays
        .iter()
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| ConfigError::Invalid {
                key: "expiry.holidays",
                message: format!("{text:?} is not a date like \"2026-12-25\""),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let verify_every = file.verify_every.unwrap_or(DEFAULT_VERIFY_EVERY);
    if verify_every.is_zero() {
        return Err(ConfigError::Invalid {
            key: "expiry.verify_every",
            message: "must be longer than 0s".into(),
        });
    }
    Ok(Expiry {
        cutoff,
        warn_before,
        reminder,
        holidays,
        verify_every,
    })
}

/// The test-only knobs (see [`Testing`]); a value that does not parse is an error like any other.
fn resolve_testing(env: &dyn Fn(&str) -> Option<String>) -> Result<Testing, ConfigError> {
    let fake_now = env("KITED_FAKE_NOW")
        .map(|text| {
            DateTime::parse_from_rfc3339(text.trim()).map_err(|_| ConfigError::Invalid {
                key: "KITED_FAKE_NOW",
                message: format!("{text:?} is not an RFC 3339 time"),
            })
        })
        .transpose()?;
    let command_timeout = env("KITED_COMMAND_TIMEOUT_MS")
        .map(|text| match text.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(ConfigError::Invalid {
                key: "KITED_COMMAND_TIMEOUT_MS",
                message: format!("{text:?} is not a positive number of milliseconds"),
            }),
        })
        .transpose()?;
    Ok(Testing {
        fake_now,
        command_timeout,
    })
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let normalized = text
        .strip_prefix("localhost:")
        .map(|port| format!("127.0.0.1:{port}"));
    normalized
        .as_deref()
        .unwrap_or(text)
        .parse()
        .map_err(|_| ConfigError::Invalid {
            key: "http.listen",
            message: format!("{text:?} is not an address like 127.0.0.1:8079"),
        })
}

/// The TOML file, exactly the frozen keys; unknown keys are an error so typos surface.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    kite: FileKite,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    ipc: FileIpc,
    #[serde(default)]
    store: FileStore,
    #[serde(default)]
    expiry: FileExpiry,
    #[serde(default)]
    notify: FileNotify,
    #[serde(default)]
    hooks: FileHooks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKite {
    api_key: Option<String>,
    api_secret_file: Option<PathBuf>,
    api_root: Option<String>,
    login_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    listen: Option<String>,
    public_url: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    postbacks: Option<bool>,
    exchange_api: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIpc {
    socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileStore {
    dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileExpiry {
    cutoff: Option<String>,
    /// Durations in humantime's syntax: "15m", "1h30m", "90s", "2d".
    warn_before: Option<Vec<humantime_serde::Serde<Duration>>>,
    reminder: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    verify_every: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNotify {
    desktop: Option<bool>,
    command: Option<Vec<String>>,
    open_command: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHooks {
    env_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
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
        assert_eq!(default.expiry.reminder.as_str(), DEFAULT_REMINDER);
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
        assert_eq!(plain.command_timeout(), crate::notify::COMMAND_TIMEOUT);
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
}
