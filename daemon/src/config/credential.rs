//! Secrets kited reads for the services it talks to (phone push tokens, the Redis password):
//! from the environment, a configured file, or systemd's credentials directory, and where each
//! came from, which `check-config` shows instead of the value.

use crate::config::error::ConfigError;
use crate::token::Secret;
use std::path::{Path, PathBuf};

/// Where a secret came from (`check-config` shows this, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(&'static str),
    File(PathBuf),
    Credential(PathBuf),
    Missing,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env(var) => write!(f, "set ({var})"),
            TokenSource::File(path) => write!(f, "set ({})", path.display()),
            TokenSource::Credential(path) => {
                write!(f, "set (systemd credential {})", path.display())
            }
            TokenSource::Missing => f.write_str("missing"),
        }
    }
}

impl TokenSource {
    /// The configured file the secret was read from, if it came from one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            TokenSource::File(path) => Some(path),
            TokenSource::Env(_) | TokenSource::Credential(_) | TokenSource::Missing => None,
        }
    }
}

/// A secret: the environment, else the configured file, else systemd's credential.
/// A blank token counts as none. A configured file that cannot be read is an error.
pub fn resolve_token(
    key: &'static str,
    file: Option<&Path>,
    credential: &str,
    var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Option<Secret>, TokenSource), ConfigError> {
    let found = if let Some(value) = env(var) {
        Some((value, TokenSource::Env(var)))
    } else if let Some(path) = file {
        let text = read_secret(key, path)?;
        Some((text, TokenSource::File(path.to_path_buf())))
    } else if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(credential);
        match path.exists() {
            true => Some((read_secret(key, &path)?, TokenSource::Credential(path))),
            false => None,
        }
    } else {
        None
    };
    Ok(match found {
        Some((value, source)) if !value.trim().is_empty() => {
            (Some(Secret::new(value.trim())), source)
        }
        _ => (None, TokenSource::Missing),
    })
}

fn read_secret(key: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
        key,
        path: path.to_path_buf(),
        source,
    })
}
