//! The only module that touches sled: the token record, durably, in a private state directory.
//!
//! A write that fails (a full disk, above all) marks the store as failing: `status` and
//! `/healthz` say so, and [`Store::ensure_writable`] reopens sled (which refuses every write
//! after one I/O error until it is reopened) and proves a write works before anything spends
//! Kite's single-use request token.

pub(crate) mod health;
mod links;

use crate::session::ticket::KEY_LEN as TICKET_KEY_LEN;
use crate::token::{TokenRecord, RECORD_VERSION};
use serde::{Deserialize, Serialize};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

/// The key of the current token in the `token` tree.
const CURRENT: &[u8] = b"current";
/// The key of the login-ticket signing key in the `keys` tree.
const TICKET_KEY: &[u8] = b"login_ticket_hmac";
/// The key of the pinned Zerodha user id in the `keys` tree.
const PINNED_USER: &[u8] = b"pinned_user_id";
/// The key [`Store::ensure_writable`] writes and removes again.
const PROBE: &[u8] = b"probe";
/// How much the probe writes: twice a token record (~1 KiB), and under sled's large-value
/// threshold (a quarter segment), so it takes the same path in sled as the record.
const PROBE_BYTES: usize = 2 * 1024;
/// Free space below which the disk counts as full before an exchange: room for a few of sled's
/// segments, so the record that follows cannot run out of space half-way.
const MIN_FREE: u64 = 4 * SEGMENT_SIZE as u64;
/// sled segment size: see `open_db`.
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
    #[error("the disk holding {dir} is full: free some space (kited retries by itself)")]
    DiskFull { dir: PathBuf },
    #[error("cannot write the token store in {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the token store in {dir} failed: {message}")]
    Sled { dir: PathBuf, message: String },
    #[error("stored token record is unreadable: {0}")]
    Corrupt(String),
    /// The database is closed after a failed reopen; the sentence of the failure that did it.
    #[error("{0}")]
    Closed(String),
}

/// The on-disk envelope: a version number beside the record, so formats can migrate.
#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u32,
    token: TokenRecord,
}

/// An open sled database and its trees.
struct Db {
    db: sled::Db,
    tokens: sled::Tree,
    /// Keys kited made for itself (the login-ticket key), kept across restarts.
    keys: sled::Tree,
}

pub struct Store {
    /// `None` only while a reopen after a failure has not succeeded yet.
    db: Mutex<Option<Db>>,
    /// Why the store is failing (one sentence), or `None` while writes work.
    health: watch::Sender<Option<String>>,
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
        let db = open_db(dir)?;
        make_private(dir).map_err(dir_err)?;
        Ok(Store {
            db: Mutex::new(Some(db)),
            health: watch::channel(None).0,
            _lock: lock,
            dir: dir.to_path_buf(),
        })
    }

    /// Why writes fail right now, or `None` while they work.
    pub fn failing(&self) -> Option<String> {
        self.health.borrow().clone()
    }

    /// A receiver that changes whenever the store starts or stops failing.
    pub fn watch_health(&self) -> watch::Receiver<Option<String>> {
        self.health.subscribe()
    }

    /// Runs `op` on the open database; a failure marks the store as failing.
    fn with_db<T>(&self, op: impl FnOnce(&Db) -> sled::Result<T>) -> Result<T, StoreError> {
        let guard = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let result = match guard.as_ref() {
            Some(db) => op(db).map_err(|e| classify(&self.dir, e)),
            None => Err(self.failure()),
        };
        drop(guard);
        if let Err(e) = &result {
            self.mark_failing(e);
        }
        result
    }

    /// The error to report while the database is closed after a failed reopen.
    fn failure(&self) -> StoreError {
        StoreError::Closed(
            self.failing()
                .unwrap_or_else(|| format!("the token store in {} is closed", self.dir.display())),
        )
    }

    fn mark_failing(&self, error: &StoreError) {
        let sentence = error.to_string();
        self.health.send_if_modified(|now| {
            if now.as_deref() == Some(sentence.as_str()) {
                return false;
            }
            tracing::error!("{sentence}");
            *now = Some(sentence);
            true
        });
    }

    /// Proves that a write reaches the disk and that room is left for the next, reopening
    /// sled when the probe fails (sled refuses every write after one I/O error until it is
    /// reopened). Marks the store failing, or healthy again, accordingly.
    pub fn ensure_writable(&self) -> Result<(), StoreError> {
        let result = self
            .probe()
            .or_else(|_| {
                self.reopen()?;
                self.probe()
            })
            .and_then(|()| self.check_free_space());
        match &result {
            Ok(()) => {
                if self.health.send_replace(None).is_some() {
                    tracing::info!("the token store in {} works again", self.dir.display());
                }
            }
            Err(e) => self.mark_failing(e),
        }
        result
    }

    /// Writes and removes a record-sized value, and waits for both to reach the disk.
    fn probe(&self) -> Result<(), StoreError> {
        self.with_db(|db| {
            db.tokens.insert(PROBE, vec![0u8; PROBE_BYTES])?;
            db.db.flush()?;
            db.tokens.remove(PROBE)?;
            db.db.flush()?;
            Ok(())
        })
    }

    /// Closes sled and opens it again from what is on disk.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.lock().unwrap_or_else(|e| e.into_inner());
        // Closed first: sled locks its files. A database that failed a write does not flush
        // on close (it returns its stored error at once).
        guard.take();
        *guard = Some(open_db(&self.dir)?);
        tracing::info!("reopened the token store in {}", self.dir.display());
        Ok(())
    }

    /// Fails when the file system holding the store has less than [`MIN_FREE`] left.
    fn check_free_space(&self) -> Result<(), StoreError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| StoreError::Io {
            dir: self.dir.clone(),
            source: e.into(),
        })?;
        if stat.f_bavail.saturating_mul(stat.f_frsize) < MIN_FREE {
            return Err(StoreError::DiskFull {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// The stored token, migrated to the current format, if any.
    pub fn load_token(&self) -> Result<Option<TokenRecord>, StoreError> {
        let Some(bytes) = self.with_db(|db| db.tokens.get(CURRENT))? else {
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
        self.write_flushed(|db| db.tokens.insert(CURRENT, bytes))?;
        self.keep_private()
    }

    /// Removes the token (logout) and waits until that is on disk.
    pub fn clear_token(&self) -> Result<(), StoreError> {
        self.write_flushed(|db| db.tokens.remove(CURRENT))
    }

    /// Runs `write` and waits until it is on disk.
    fn write_flushed<T>(
        &self,
        write: impl FnOnce(&Db) -> sled::Result<T>,
    ) -> Result<(), StoreError> {
        self.with_db(|db| {
            write(db)?;
            db.db.flush()?;
            Ok(())
        })
    }

    /// Makes the files sled may have created since open private, even under a loose umask.
    fn keep_private(&self) -> Result<(), StoreError> {
        make_private(&self.dir).map_err(|source| StoreError::Dir {
            dir: self.dir.clone(),
            source,
        })
    }
}

/// Opens sled in `dir/db`.
fn open_db(dir: &Path) -> Result<Db, StoreError> {
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
        .map_err(|e| classify(dir, e))?;
    let tokens = db.open_tree("token").map_err(|e| classify(dir, e))?;
    let keys = db.open_tree("keys").map_err(|e| classify(dir, e))?;
    Ok(Db { db, tokens, keys })
}

/// Whether the file system holding `dir` has less than [`MIN_FREE`] left (false when unknown).
fn out_of_space(dir: &Path) -> bool {
    rustix::fs::statvfs(dir)
        .map(|stat| stat.f_bavail.saturating_mul(stat.f_frsize) < MIN_FREE)
        .unwrap_or(false)
}

/// A sled error as one sentence: a full disk says so, other I/O errors say what the kernel said.
fn classify(dir: &Path, error: sled::Error) -> StoreError {
    let dir = dir.to_path_buf();
    match error {
        sled::Error::Io(source) => {
            let errno = source
                .raw_os_error()
                .map(rustix::io::Errno::from_raw_os_error);
            let full = matches!(
                errno,
                Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT)
            ) || matches!(
                source.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
                // sled's copies of a stored error may keep only the original's Debug text.
                || ["StorageFull", "QuotaExceeded", "No space left on device"]
                    .iter()
                    .any(|sign| source.to_string().contains(sign))
                // A copy that kept only the kind ("other error"): the file system tells.
                || out_of_space(&dir);
            if full {
                return StoreError::DiskFull { dir };
            }
            // sled hands out copies of a stored error with its Debug text as the message;
            // the kind alone reads better than that.
            let source = match errno {
                Some(_) => source,
                None => std::io::Error::from(source.kind()),
            };
            StoreError::Io { dir, source }
        }
        other => StoreError::Sled {
            dir,
            message: other.to_string(),
        },
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
    fn a_rotated_ticket_key_replaces_the_old_one_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "p").unwrap();
        let first = store.ticket_key().unwrap();
        let rotated = store.rotate_ticket_key().unwrap();
        assert_ne!(first, rotated);
        assert_eq!(store.ticket_key().unwrap(), rotated);
        drop(store);
        let store = Store::open(dir.path(), "p").unwrap();
        assert_eq!(store.ticket_key().unwrap(), rotated);
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

    /// Token records as sled holds them: every field set, and the fewest (no refresh token, no
    /// invalidation, an empty email and lists).
    const ON_DISK: [&str; 2] = [
        r#"{"v":1,"token":{"access_token":"accesstoken0123456789abcdefghijk","api_key":"kitedtestkey0001","user_id":"AB1234","user_name":"Kite Tester","user_shortname":"Kite","email":"tester@example.com","user_type":"individual","broker":"ZERODHA","exchanges":["NSE","BSE"],"products":["CNC","MIS"],"order_types":["MARKET","LIMIT"],"login_time":"2026-11-23T09:00:00+05:30","expires_at":"2026-11-24T06:00:00+05:30","refresh_token":"refresh0123","invalidated":"Kite refused it: Token is invalid"}}"#,
        r#"{"v":1,"token":{"access_token":"t1","api_key":"kitedtestkey0001","user_id":"AB1234","user_name":"Kite Tester","user_shortname":"Kite","email":"","user_type":"","broker":"ZERODHA","exchanges":[],"products":[],"order_types":[],"login_time":"2026-11-23T09:00:00+05:30","expires_at":"2026-11-24T06:00:00+05:30","refresh_token":null,"invalidated":null}}"#,
    ];

    #[test]
    fn records_on_disk_load_and_save_byte_for_byte() {
        let mut full = TokenRecord::sample(
            "accesstoken0123456789abcdefghijk",
            "2026-11-24T06:00:00+05:30",
        );
        full.profile.email = "tester@example.com".into();
        full.profile.user_type = "individual".into();
        full.profile.exchanges = vec!["NSE".into(), "BSE".into()];
        full.profile.products = vec!["CNC".into(), "MIS".into()];
        full.profile.order_types = vec!["MARKET".into(), "LIMIT".into()];
        full.refresh_token = Some(crate::token::Secret::new("refresh0123"));
        full.invalidated = Some("Kite refused it: Token is invalid".into());
        let fewest = record("t1");
        for (bytes, expected) in ON_DISK.into_iter().zip([full, fewest]) {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), "p").unwrap();
            store
                .with_db(|db| db.tokens.insert(CURRENT, bytes.as_bytes()))
                .unwrap();
            let loaded = store.load_token().unwrap().unwrap();
            assert_eq!(loaded, expected);
            assert_eq!(loaded.login_time.to_rfc3339(), "2026-11-23T09:00:00+05:30");
            assert_eq!(loaded.expires_at.to_rfc3339(), "2026-11-24T06:00:00+05:30");
            // Written back, the record is the same bytes: times as RFC 3339 text in IST.
            store.save_token(&loaded).unwrap();
            let written = store.with_db(|db| db.tokens.get(CURRENT)).unwrap().unwrap();
            assert_eq!(std::str::from_utf8(&written).unwrap(), bytes);
            let value: serde_json::Value = serde_json::from_slice(&written).unwrap();
            assert_eq!(value["token"]["expires_at"], "2026-11-24T06:00:00+05:30");
            assert_eq!(value["token"]["login_time"], "2026-11-23T09:00:00+05:30");
        }
    }

    #[test]
    fn null_profile_fields_on_disk_load_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "p").unwrap();
        let bytes = ON_DISK[1].replace(r#""email":"""#, r#""email":null"#);
        let bytes = bytes.replace(r#""exchanges":[],"#, "");
        store
            .with_db(|db| db.tokens.insert(CURRENT, bytes.as_bytes()))
            .unwrap();
        assert_eq!(store.load_token().unwrap(), Some(record("t1")));
    }

    #[test]
    fn unknown_version_is_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "p").unwrap();
        store
            .with_db(|db| {
                db.tokens
                    .insert(CURRENT, br#"{"v":99,"token":{}}"#.to_vec())
            })
            .unwrap();
        assert!(matches!(store.load_token(), Err(StoreError::Corrupt(_))));
    }
}
