//! The only module that touches sled: the token record, durably, in a private state directory.

use crate::ticket::KEY_LEN as TICKET_KEY_LEN;
use crate::token::{TokenRecord, RECORD_VERSION};
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The key of the current token in the `token` tree.
const CURRENT: &[u8] = b"current";
/// The key of the login-ticket signing key in the `keys` tree.
const TICKET_KEY: &[u8] = b"login_ticket_hmac";
/// sled segment size: see `Store::open`.
const SEGMENT_SIZE: usize = 16 * 1024;
/// The lock file that keeps two daemons off one state directory.
const LOCK_FILE: &str = "kited.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("another kited is already running for profile {profile} (state dir {dir} is locked)")]
    Locked { profile: String, dir: PathBuf },
    #[error("cannot prepare state dir {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the token store in {dir}: {source}")]
    Open { dir: PathBuf, source: sled::Error },
    #[error("token store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored token record is unreadable: {0}")]
    Corrupt(String),
}

/// The on-disk envelope: a version number beside the record, so formats can migrate.
#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    token: TokenRecord,
}

pub struct Store {
    db: sled::Db,
    tokens: sled::Tree,
    /// Keys kited made for itself (the login-ticket key), kept across restarts.
    keys: sled::Tree,
    /// Held for the life of the store: the flock that makes this daemon the only one.
    _lock: File,
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) the store in `dir`, private to the user, locked against a second daemon.
    pub fn open(dir: &Path, profile: &str) -> Result<Store, StoreError> {
        let dir_err = |source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(LOCK_FILE))
            .map_err(dir_err)?;
        if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            return Err(StoreError::Locked {
                profile: profile.to_string(),
                dir: dir.to_path_buf(),
            });
        }
        let db = sled::Config::new()
            .path(dir.join("db"))
            // We flush explicitly after every write; sled's periodic flusher would only wake
            // an idle daemon.
            .flush_every_ms(None)
            // The store holds one small record: a small cache keeps the idle RSS small.
            .cache_capacity(1 << 20)
            // sled keeps dozens of segment-sized write buffers; at the 512 KiB default they
            // were 21 MB of the idle daemon's RSS. A record is ~1 KiB, so 16 KiB segments hold
            // it with room to spare. (Fixed per store: sled refuses to reopen with another size.)
            .segment_size(SEGMENT_SIZE)
            .open()
            .map_err(|source| StoreError::Open {
                dir: dir.to_path_buf(),
                source,
            })?;
        let tokens = db.open_tree("token")?;
        let keys = db.open_tree("keys")?;
        make_private(dir).map_err(dir_err)?;
        Ok(Store {
            db,
            tokens,
            keys,
            _lock: lock,
            dir: dir.to_path_buf(),
        })
    }

    /// The stored token, migrated to the current format, if any.
    pub fn load_token(&self) -> Result<Option<TokenRecord>, StoreError> {
        let Some(bytes) = self.tokens.get(CURRENT)? else {
            return Ok(None);
        };
        let envelope: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match envelope.get("v").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(RECORD_VERSION) => {
                let envelope: Envelope = serde_json::from_value(envelope)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(Some(envelope.token))
            }
            Some(v) => Err(StoreError::Corrupt(format!(
                "record version {v} is newer than this kited understands ({RECORD_VERSION})"
            ))),
            None => Err(StoreError::Corrupt("record has no version".into())),
        }
    }

    /// Writes the token and waits until it is on disk. Only then may anyone be told.
    pub fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let envelope = Envelope {
            v: RECORD_VERSION,
            token: token.clone(),
        };
        let bytes = serde_json::to_vec(&envelope).expect("a token record serializes");
        self.tokens.insert(CURRENT, bytes)?;
        self.db.flush()?;
        // sled may have created files since open; keep them private even under a loose umask.
        make_private(&self.dir).map_err(|source| StoreError::Dir {
            dir: self.dir.clone(),
            source,
        })
    }

    /// The key that signs login tickets: made (random) and flushed the first time, then the same
    /// one on every start, so links already sent keep working after a restart.
    pub fn ticket_key(&self) -> Result<[u8; TICKET_KEY_LEN], StoreError> {
        if let Some(bytes) = self.keys.get(TICKET_KEY)? {
            return bytes.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!(
                    "the login ticket key is not {TICKET_KEY_LEN} bytes"
                ))
            });
        }
        let key: [u8; TICKET_KEY_LEN] = rand::random();
        self.keys.insert(TICKET_KEY, &key[..])?;
        self.db.flush()?;
        make_private(&self.dir).map_err(|source| StoreError::Dir {
            dir: self.dir.clone(),
            source,
        })?;
        Ok(key)
    }

    /// Removes the token (logout) and waits until that is on disk.
    pub fn clear_token(&self) -> Result<(), StoreError> {
        self.tokens.remove(CURRENT)?;
        self.db.flush()?;
        Ok(())
    }
}

/// Makes every file under `dir` 0600 and every directory 0700, whatever the umask was.
fn make_private(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700))?;
            make_private(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: &str) -> TokenRecord {
        TokenRecord::sample(token, "2026-11-24T06:00:00+05:30")
    }

    #[test]
    fn saves_reopens_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), "p").unwrap();
            assert_eq!(store.load_token().unwrap(), None);
            store.save_token(&record("t1")).unwrap();
        }
        let store = Store::open(dir.path(), "p").unwrap();
        assert_eq!(store.load_token().unwrap(), Some(record("t1")));
        store.clear_token().unwrap();
        assert_eq!(store.load_token().unwrap(), None);
    }

    #[test]
    fn the_ticket_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path(), "p").unwrap().ticket_key().unwrap();
        let store = Store::open(dir.path(), "p").unwrap();
        assert_eq!(store.ticket_key().unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            Store::open(other.path(), "p")
                .unwrap()
                .ticket_key()
                .unwrap(),
            first
        );
    }

    #[test]
    fn second_open_is_refused_with_the_profile_name() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), "prod").unwrap();
        let err = Store::open(dir.path(), "prod").err().unwrap().to_string();
        assert!(
            err.contains("another kited is already running for profile prod"),
            "{err}"
        );
    }

    #[test]
    fn everything_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = Store::open(&state, "p").unwrap();
        store.save_token(&record("t1")).unwrap();
        fn check(path: &Path) {
            for entry in std::fs::read_dir(path).unwrap() {
                let entry = entry.unwrap();
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                if entry.file_type().unwrap().is_dir() {
                    assert_eq!(mode, 0o700, "{:?}", entry.path());
                    check(&entry.path());
                } else {
                    assert_eq!(mode, 0o600, "{:?}", entry.path());
                }
            }
        }
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        check(&state);
    }

    #[test]
    fn unknown_version_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "p").unwrap();
        store
            .tokens
            .insert(CURRENT, br#"{"v":99,"token":{}}"#.to_vec())
            .unwrap();
        assert!(matches!(store.load_token(), Err(StoreError::Corrupt(_))));
    }
}
