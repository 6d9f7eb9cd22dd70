//! Resolves one `Config` from flags, environment, the TOML file and defaults, in that order.

pub(crate) mod check;
pub(crate) mod env;
pub(crate) mod error;
pub(crate) mod expiry;
pub(crate) mod file;
pub(crate) mod public_listen;
pub(crate) mod public_url;
pub(crate) mod push;
pub(crate) mod readiness;
pub(crate) mod secrets;
pub(crate) mod sinks;
pub(crate) mod testing;

pub use crate::config::env::Env;
pub use crate::config::error::ConfigError;
use crate::config::expiry::resolve_expiry;
pub use crate::config::expiry::Expiry;
use crate::config::file::File;
use crate::config::public_listen::PublicListen;
use crate::config::public_url::PublicUrl;
use crate::config::push::PushSettings;
pub use crate::config::readiness::Readiness;
use crate::config::secrets::SecretPlaces;
pub use crate::config::secrets::SecretSource;
use crate::config::sinks::SinkSettings;
use crate::config::testing::resolve_testing;
pub use crate::config::testing::Testing;
use crate::token::Secret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kite's own clients give up after 7 s; so do we by default.
pub const DEFAULT_KITE_TIMEOUT: Duration = Duration::from_secs(7);
/// Where the default profile listens: the redirect URL registered with Kite names it
/// (`http://127.0.0.1:8079/auth/callback`), so it must stay put across releases.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8079";
pub const DEFAULT_API_ROOT: &str = "https://api.kite.trade";
pub const DEFAULT_LOGIN_URL: &str = "https://kite.zerodha.com/connect/login";
/// How long `notify.command` may run before it (and everything it started) is killed: a hook
/// that hangs must not pile up processes, and ten seconds is plenty to post a message.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The file systemd's `LoadCredential=` puts the secret in.
pub const CREDENTIAL_NAME: &str = "kite-api-secret";
/// `$XDG_CONFIG_HOME/kited/PROFILE` + this: the secret file `kitectl setup` writes, the units'
/// `LoadCredential=` reads, and a kited started by hand reads last.
pub const PROFILE_SECRET_SUFFIX: &str = ".api-secret";

/// What the command line said; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub profile: String,
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
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
    /// `http.listen_public_ok`: the person knows `http.listen` is not a loopback address.
    pub listen_public_ok: bool,
    /// `http.public_listen`: where only the public routes are served, whatever `Host` says.
    pub public_listen: Option<PublicListen>,
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
    /// Phone push channels (Telegram, ntfy) and the events they carry.
    pub push: PushSettings,
    /// The morning check, the egress IPs registered with Kite and the reminder's repeats.
    pub readiness: Readiness,
    /// Where else the token goes: Redis, for programs on other hosts and in containers.
    pub sinks: SinkSettings,
    pub testing: Testing,
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
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT)
    }

    /// Whether kited can talk to Kite at all.
    pub fn is_configured(&self) -> bool {
        self.api_key.is_some() && self.api_secret.is_some()
    }

    /// A warning for every secret in use (the api secret, the channels' tokens, the Redis
    /// password) kept in a file that others can read or that another user owns: `check-config`
    /// prints them and kited logs them at start.
    pub fn secret_file_warnings(&self) -> Vec<String> {
        let telegram = self.push.telegram.as_ref().map(|t| &t.token_source);
        let ntfy = self.push.ntfy.as_ref().map(|n| &n.token_source);
        let redis = self.sinks.redis.as_ref().map(|r| &r.password_source);
        [Some(&self.secret_source), telegram, ntfy, redis]
            .into_iter()
            .flatten()
            .filter_map(SecretSource::kept_in)
            .filter_map(secrets::exposure_warning)
            .collect()
    }

    /// The widest warning window (the "expiring" state starts there).
    pub fn expiring_window(&self) -> chrono::Duration {
        let widest = self.expiry.warn_before.first().copied().unwrap_or_default();
        chrono::Duration::from_std(widest).unwrap_or_default()
    }

    /// Resolves the configuration from `flags`, the environment seen through `env`, and the file.
    pub fn load(flags: &Flags, env: &Env) -> Result<Config, ConfigError> {
        let profile = flags.profile.clone();
        let profile_name = profile.clone();
        let env = |key: &str| env(key).filter(|v| !v.is_empty());
        let home = env("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let xdg = |var: &str, fallback: &str| {
            env(var)
                .and_then(|v| kite_proto::socket_path::xdg_base_dir(&v))
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
        let (api_secret, secret_source) = secrets::resolve(
            &SecretPlaces {
                var: "KITE_API_SECRET",
                file_key: "kite.api_secret_file",
                file: file.kite.api_secret_file.as_deref(),
                credential: CREDENTIAL_NAME,
                profile_file: Some(&profile_secret_file),
            },
            &env,
        )?;
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
        let listen_public_ok = file.http.listen_public_ok.unwrap_or(false);
        if !crate::config::public_listen::is_loopback(listen.ip()) && !listen_public_ok {
            return Err(ConfigError::Invalid {
                key: "http.listen",
                message: format!(
                    "{listen} is not a loopback address, so every route (the token page, the \
                     JSON API) would face the network; set http.listen_public_ok = true if that \
                     is really meant, or keep http.listen on 127.0.0.1 and give the proxy \
                     http.public_listen"
                ),
            });
        }
        let public_listen = env("KITED_PUBLIC_LISTEN")
            .or(file.http.public_listen.clone())
            .map(|text| PublicListen::parse(&text))
            .transpose()
            .map_err(|message| ConfigError::Invalid {
                key: "http.public_listen",
                message,
            })?;
        if public_listen.is_some() && public_url.is_none() {
            return Err(ConfigError::Invalid {
                key: "http.public_listen",
                message: "needs http.public_url (the https:// address the proxy serves): the \
                          callback URL and login links are made from it"
                    .into(),
            });
        }

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
            listen_public_ok,
            public_listen,
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
            push: PushSettings::resolve(&file.push, &env)?,
            readiness: Readiness::resolve(&file.readiness)?,
            sinks: SinkSettings::resolve(&file.sinks, &profile_name, &env)?,
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

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    crate::config::public_listen::socket_addr(text).map_err(|_| ConfigError::Invalid {
        key: "http.listen",
        message: format!("{text:?} is not an address like 127.0.0.1:8079"),
    })
}

#[cfg(test)]
mod tests;
