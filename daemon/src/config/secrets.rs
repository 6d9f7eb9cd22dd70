//! Every secret kited reads (the api secret, the phone push tokens, the Redis password): one
//! resolver that looks in the same places in the same order for each, and where each came from,
//! which `check-config` shows instead of the value.

use crate::config::env::Env;
use crate::config::error::ConfigError;
use crate::token::Secret;
use std::path::{Path, PathBuf};

/// Where a secret came from (`check-config` shows this, never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(&'static str),
    /// The file a config key names (`kite.api_secret_file`, `push.ntfy.token_file`, ...).
    File {
        key: &'static str,
        path: PathBuf,
    },
    /// systemd's credentials directory (`LoadCredential=` in the units).
    Credential(PathBuf),
    /// The profile's own file beside its config, which `kitectl setup` writes.
    ProfileFile(PathBuf),
    Missing,
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(var) => write!(f, "set ({var})"),
            SecretSource::File { key, path } => write!(f, "set ({key} {})", path.display()),
            SecretSource::Credential(path) => {
                write!(f, "set (systemd credential {})", path.display())
            }
            SecretSource::ProfileFile(path) => {
                write!(f, "set (the profile's secret file {})", path.display())
            }
            SecretSource::Missing => f.write_str("missing"),
        }
    }
}

impl SecretSource {
    /// The file a config key named, as that key's value.
    pub fn configured_file(&self) -> Option<&Path> {
        match self {
            SecretSource::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The file the person keeps the secret in (named in the config or the profile's own),
    /// whose owner and mode decide who else can read it. systemd's copy is its business.
    pub fn kept_in(&self) -> Option<&Path> {
        match self {
            SecretSource::File { path, .. } | SecretSource::ProfileFile(path) => Some(path),
            SecretSource::Env(_) | SecretSource::Credential(_) | SecretSource::Missing => None,
        }
    }
}

/// The places one secret may be, looked at in this order; the first that has it wins:
/// the environment variable, the file a config key names, systemd's credential, and last the
/// profile's own file (only the api secret has one).
#[derive(Debug, Clone, Copy)]
pub struct SecretPlaces<'a> {
    pub var: &'static str,
    /// The config key that names a file, for messages (`push.telegram.bot_token_file`).
    pub file_key: &'static str,
    pub file: Option<&'a Path>,
    /// The name under `$CREDENTIALS_DIRECTORY`.
    pub credential: &'static str,
    pub profile_file: Option<&'a Path>,
}

/// Finds a secret in its places. A blank one counts as none: it can never authenticate, and
/// calling it missing says so. A named file that cannot be read is an error, never skipped.
pub fn resolve(
    places: &SecretPlaces<'_>,
    env: &Env,
) -> Result<(Option<Secret>, SecretSource), ConfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
            key: places.file_key,
            path: path.to_path_buf(),
            source,
        })
    };
    // Looked for only when the variable and the named file are absent.
    let credential = || {
        env("CREDENTIALS_DIRECTORY")
            .map(|dir| Path::new(&dir).join(places.credential))
            .filter(|path| path.exists())
    };
    let found = if let Some(value) = env(places.var) {
        Some((value, SecretSource::Env(places.var)))
    } else if let Some(path) = places.file {
        let source = SecretSource::File {
            key: places.file_key,
            path: path.to_path_buf(),
        };
        Some((read(path)?, source))
    } else if let Some(path) = credential() {
        Some((read(&path)?, SecretSource::Credential(path)))
    } else if let Some(path) = places.profile_file.filter(|p| p.exists()) {
        Some((read(path)?, SecretSource::ProfileFile(path.to_path_buf())))
    } else {
        None
    };
    Ok(match found {
        Some((value, source)) if !value.trim().is_empty() => {
            (Some(Secret::new(value.trim())), source)
        }
        _ => (None, SecretSource::Missing),
    })
}

/// A warning when the file a secret is kept in can be read by other users, or belongs to
/// someone else (who could read it, or swap in a secret of their own).
pub fn exposure_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.mode() & 0o777;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Some(format!(
            "{} belongs to uid {}, not to kited's user (uid {me}): whoever owns it can read or \
             replace the secret; chown it to yourself and chmod 600 it",
            path.display(),
            meta.uid()
        ));
    }
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
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    fn places<'a>(file: Option<&'a Path>, profile_file: Option<&'a Path>) -> SecretPlaces<'a> {
        SecretPlaces {
            var: "KITED_TEST_SECRET",
            file_key: "test.secret_file",
            file,
            credential: "test-secret",
            profile_file,
        }
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| vars.get(k).cloned()
    }

    #[test]
    fn the_places_are_looked_at_in_order_and_blank_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("named");
        let profile = dir.path().join("profile");
        std::fs::write(&file, "fromfile\n").unwrap();
        std::fs::write(&profile, "fromprofile\n").unwrap();
        std::fs::write(dir.path().join("test-secret"), " fromcred \n").unwrap();
        let creds = dir.path().to_str().unwrap();

        let all = env_of(&[
            ("KITED_TEST_SECRET", "fromenv"),
            ("CREDENTIALS_DIRECTORY", creds),
        ]);
        let (secret, source) = resolve(&places(Some(&file), Some(&profile)), &all).unwrap();
        assert_eq!(secret.unwrap().expose(), "fromenv");
        assert_eq!(source, SecretSource::Env("KITED_TEST_SECRET"));

        let no_var = env_of(&[("CREDENTIALS_DIRECTORY", creds)]);
        let (secret, source) = resolve(&places(Some(&file), Some(&profile)), &no_var).unwrap();
        assert_eq!(secret.unwrap().expose(), "fromfile");
        assert_eq!(
            source.to_string(),
            format!("set (test.secret_file {})", file.display())
        );
        assert_eq!(source.configured_file(), Some(file.as_path()));

        let (secret, source) = resolve(&places(None, Some(&profile)), &no_var).unwrap();
        assert_eq!(secret.unwrap().expose(), "fromcred");
        assert!(matches!(source, SecretSource::Credential(_)));
        assert_eq!(source.kept_in(), None);

        let (secret, source) = resolve(&places(None, Some(&profile)), &env_of(&[])).unwrap();
        assert_eq!(secret.unwrap().expose(), "fromprofile");
        assert_eq!(source, SecretSource::ProfileFile(profile.clone()));
        assert_eq!(source.kept_in(), Some(profile.as_path()));

        std::fs::write(&profile, " \n").unwrap();
        let (secret, source) = resolve(&places(None, Some(&profile)), &env_of(&[])).unwrap();
        assert!(secret.is_none());
        assert_eq!(source, SecretSource::Missing);
    }

    #[test]
    fn a_named_file_that_cannot_be_read_is_an_error() {
        let missing = Path::new("/nonexistent/kited-secret");
        let err = resolve(&places(Some(missing), None), &env_of(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read test.secret_file /nonexistent/kited-secret"),
            "{err}"
        );
    }

    #[test]
    fn loose_secret_files_are_flagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposure_warning(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = exposure_warning(&path).unwrap();
        assert!(warning.contains("mode 0644"), "{warning}");
        assert!(warning.contains("chmod 600"), "{warning}");
    }

    #[test]
    fn a_secret_file_of_another_user_is_flagged() {
        // Root makes one; anyone else finds one (/etc/passwd belongs to root).
        let dir = tempfile::tempdir().unwrap();
        let path = if rustix::process::geteuid().is_root() {
            let path = dir.path().join("secret");
            std::fs::write(&path, "s").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
            path
        } else {
            PathBuf::from("/etc/passwd")
        };
        let warning = exposure_warning(&path).unwrap();
        assert!(warning.contains("belongs to uid"), "{warning}");
    }
}
