//! `hooks.env_file`: a dotenv file for programs that read files, rewritten on every token change.
//!
//! Each rewrite goes through a new temp file beside it, made with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! under an unpredictable name (nothing planted there is opened: not a symlink, not a FIFO),
//! on a blocking thread so a slow disk never stalls the daemon. A rewrite that fails is shown
//! in `status` and announced as an `env_file_failed` event: the file may still hold a token
//! that is no longer valid.

use crate::session::Session;
use crate::token::TokenRecord;
use kite_proto::{EventKind, EventName};
use rand::Rng;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Keeps the env file in step with the token until `shutdown`.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let mut token = session.watch_token();
    let mut config = session.watch_settings();
    // Subscribed once, before the first write, so an expiry is never missed between two.
    let mut events = session.events().subscribe("hooks.env_file");
    let mut last_written: Option<(PathBuf, String)> = None;
    loop {
        let settings = session.config();
        if let Some(path) = settings.env_file.clone() {
            let record = session.current();
            let usable = record
                .as_deref()
                .filter(|r| session.state_of(r).is_usable());
            let api_key = record
                .as_deref()
                .map(|r| r.api_key.as_str())
                .or(settings.api_key.as_deref())
                .unwrap_or("");
            let contents = render(api_key, usable);
            let current = Some((path.clone(), contents));
            if last_written != current {
                let contents = current.as_ref().map(|(_, c)| c.as_str()).unwrap_or("");
                let (target, text) = (path.clone(), contents.to_string());
                let written =
                    tokio::task::spawn_blocking(move || write_atomically(&target, &text)).await;
                let written = written.unwrap_or_else(|e| Err(std::io::Error::other(e)));
                match written {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "env file updated");
                        last_written = current;
                        if session.env_file_error().is_some() {
                            session.set_env_file_error(None);
                        }
                    }
                    Err(e) => {
                        let reason = e.to_string();
                        let shown = path.display().to_string();
                        tracing::warn!("cannot write hooks.env_file {shown}: {reason}");
                        let sentence = format!("cannot rewrite {shown}: {reason}");
                        if session.env_file_error().as_deref() != Some(sentence.as_str()) {
                            session.set_env_file_error(Some(sentence));
                            session.events().emit(EventKind::EnvFileFailed {
                                path: shown,
                                reason,
                            });
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = token.changed() => if changed.is_err() { return },
            changed = config.changed() => if changed.is_err() { return },
            // Expiry changes no record, but the file must stop offering a dead token.
            // A lag may have hidden an expiry: rewrite then too.
            event = events.next() => match event {
                Some(event) if event.kind.event_name() == EventName::TokenExpired => {}
                Some(_) if events.missed_some() => {}
                Some(_) => continue,
                None => return,
            },
        }
    }
}

/// The dotenv text: the token while usable, empty values otherwise.
pub fn render(api_key: &str, usable: Option<&TokenRecord>) -> String {
    let (token, expires) = usable
        .map(|r| (r.access_token.expose(), crate::clock::rfc3339(r.expires_at)))
        .unwrap_or_default();
    format!(
        "# Written by kited; rewritten on every new token. Do not edit.\n\
         KITE_API_KEY={}\nKITE_ACCESS_TOKEN={}\nKITE_TOKEN_EXPIRES_AT={}\n",
        quote(api_key),
        quote(token),
        quote(&expires)
    )
}

/// Values are alphanumerics and RFC 3339 times in practice; quote anyway for safety.
fn quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_:+.".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// Writes `contents` to a new 0600 temp file beside `path`, syncs it, then renames it over
/// `path`. The temp file's name is random and it is created exclusively without following
/// links, so nothing another process put there is ever opened or overwritten.
pub fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("env");
    let suffix: u64 = rand::rng().random();
    let temp = dir.join(format!(".{name}.kited-{suffix:016x}"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc_flags::NOFOLLOW)
        .mode(0o600)
        .open(&temp)?;
    // From here on the temp file is ours: remove it if anything fails.
    let result = (|| {
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        // The rename itself is durable only once the directory is synced.
        if let Ok(dir) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_flags::DIRECTORY)
            .open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The open(2) flags std has no names for.
mod libc_flags {
    pub const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    pub const DIRECTORY: i32 = rustix::fs::OFlags::DIRECTORY.bits() as i32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_private_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kite.env");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, "KITE_ACCESS_TOKEN=x\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "KITE_ACCESS_TOKEN=x\n"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_temp_files_do_not_widen_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kite.env");
        let temp = dir
            .path()
            .join(format!(".kite.env.kited-{}", std::process::id()));
        std::fs::write(&temp, "stale").unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_atomically(&path, "KITE_ACCESS_TOKEN=\n").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Someone else's file at an old-style name is neither used nor removed.
        assert_eq!(std::fs::read_to_string(&temp).unwrap(), "stale");
    }

    #[test]
    fn rendering() {
        assert_eq!(
            render("kitedtestkey0001", None),
            "# Written by kited; rewritten on every new token. Do not edit.\n\
             KITE_API_KEY=kitedtestkey0001\nKITE_ACCESS_TOKEN=\nKITE_TOKEN_EXPIRES_AT=\n"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc123"), "abc123");
        assert_eq!(
            quote("2026-11-24T06:00:00+05:30"),
            "2026-11-24T06:00:00+05:30"
        );
        assert_eq!(quote("a b'c"), "'a b'\\''c'");
    }
}
