//! `hooks.env_file`: a dotenv file for programs that read files, rewritten on every token change.

use crate::session::Session;
use crate::token::TokenRecord;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// Keeps the env file in step with the token until `shutdown`.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let mut token = session.watch_token();
    let mut config = session.watch_config();
    let mut last_written: Option<String> = None;
    loop {
        if let Some(path) = session.config().env_file.clone() {
            let record = session.current();
            let usable = record
                .as_deref()
                .filter(|r| session.state_of(r).is_usable());
            let contents = render(usable, record.as_deref());
            if last_written.as_deref() != Some(contents.as_str()) {
                match write_atomically(&path, &contents) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "env file updated");
                        last_written = Some(contents);
                    }
                    Err(e) => tracing::warn!("cannot write hooks.env_file {}: {e}", path.display()),
                }
            }
        }
        let mut events = session.events().subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = token.changed() => if changed.is_err() { return },
            changed = config.changed() => if changed.is_err() { return },
            // Expiry changes no record, but the file must stop offering a dead token.
            _ = async { while let Ok(e) = events.recv().await {
                if e.kind.name() == "token_expired" { break }
            } } => {}
        }
    }
}

/// The dotenv text: the token while usable, empty values otherwise.
pub fn render(usable: Option<&TokenRecord>, any: Option<&TokenRecord>) -> String {
    let api_key = any.map(|r| r.api_key.as_str()).unwrap_or("");
    let (token, expires) = usable
        .map(|r| (r.access_token.expose(), r.expires_at.as_str()))
        .unwrap_or(("", ""));
    format!(
        "# Written by kited; rewritten on every new token. Do not edit.\n\
         KITE_API_KEY={}\nKITE_ACCESS_TOKEN={}\nKITE_TOKEN_EXPIRES_AT={}\n",
        quote(api_key),
        quote(token),
        quote(expires)
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

/// Writes `contents` to a 0600 temp file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("env");
    let temp = dir.join(format!(".{name}.kited-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
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
    fn quoting() {
        assert_eq!(quote("abc123"), "abc123");
        assert_eq!(
            quote("2026-11-24T06:00:00+05:30"),
            "2026-11-24T06:00:00+05:30"
        );
        assert_eq!(quote("a b'c"), "'a b'\\''c'");
    }
}
