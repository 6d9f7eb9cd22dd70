//! The config file's shape: exactly the frozen keys, in TOML; an unknown key is an error so a
//! typo surfaces instead of being ignored.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The TOML file, exactly the frozen keys; unknown keys are an error so typos surface.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub kite: FileKite,
    #[serde(default)]
    pub http: FileHttp,
    #[serde(default)]
    pub ipc: FileIpc,
    #[serde(default)]
    pub store: FileStore,
    #[serde(default)]
    pub expiry: FileExpiry,
    #[serde(default)]
    pub notify: FileNotify,
    #[serde(default)]
    pub hooks: FileHooks,
    #[serde(default)]
    pub push: crate::config::push::FilePush,
    #[serde(default)]
    pub readiness: crate::config::readiness::FileReadiness,
    #[serde(default)]
    pub sinks: crate::config::sinks::FileSinks,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileKite {
    pub api_key: Option<String>,
    pub api_secret_file: Option<PathBuf>,
    pub api_root: Option<String>,
    pub login_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub user_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    pub listen: Option<String>,
    pub listen_public_ok: Option<bool>,
    pub public_url: Option<String>,
    pub public_listen: Option<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub postbacks: Option<bool>,
    pub exchange_api: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileIpc {
    pub socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileStore {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileExpiry {
    pub cutoff: Option<String>,
    /// Durations in humantime's syntax: "15m", "1h30m", "90s", "2d".
    pub warn_before: Option<Vec<humantime_serde::Serde<Duration>>>,
    pub reminder: Option<String>,
    #[serde(default)]
    pub holidays: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub verify_every: Option<Duration>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileNotify {
    pub desktop: Option<bool>,
    pub command: Option<Vec<String>>,
    pub open_command: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileHooks {
    pub env_file: Option<PathBuf>,
}
