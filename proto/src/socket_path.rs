//! Where the daemon's socket lives, decided the same way by the daemon and every client.
//!
//! Order: an explicit `--socket`, then `KITED_SOCKET`, then
//! `$XDG_RUNTIME_DIR/kited/NAME.sock`, then `/tmp/kited-$UID/NAME.sock`.

use std::path::{Path, PathBuf};

/// The profile every command uses when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// Profile names become file names, so they are kept to a safe alphabet.
pub fn validate_profile(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "profile name {name:?} must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        ))
    }
}

/// The per-user directory for runtime files: `$XDG_RUNTIME_DIR/kited`, or `/tmp/kited-$UID`.
pub fn runtime_dir() -> PathBuf {
    runtime_dir_in(std::env::var("XDG_RUNTIME_DIR").ok().as_deref())
}

/// [`runtime_dir`] for a given `XDG_RUNTIME_DIR` value (`None` or empty: unset).
pub fn runtime_dir_in(xdg_runtime_dir: Option<&str>) -> PathBuf {
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => Path::new(dir).join("kited"),
        _ => PathBuf::from(format!("/tmp/kited-{}", rustix::process::getuid().as_raw())),
    }
}

/// The socket path for `profile`, honouring an explicit path and `KITED_SOCKET`.
pub fn socket_path(explicit: Option<&Path>, profile: &str) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    match std::env::var_os("KITED_SOCKET") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => runtime_dir().join(format!("{profile}.sock")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins() {
        assert_eq!(
            socket_path(Some(Path::new("/x/y.sock")), "dev"),
            PathBuf::from("/x/y.sock")
        );
    }

    #[test]
    fn profile_names() {
        assert!(validate_profile("default").is_ok());
        assert!(validate_profile("prod-2").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(validate_profile(bad).is_err(), "{bad}");
        }
    }
}
