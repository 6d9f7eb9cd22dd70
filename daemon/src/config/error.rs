//! Why a configuration cannot be used, named so a person can fix it: the one error type every
//! part of `config/` returns (its own file, so the TOML shapes and the resolver share it
//! without importing each other).

use std::path::PathBuf;

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
    #[error("cannot read {key} {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}
