//! The socket's directory and file: made private without following links, claimed under a
//! lock, removed only if ours.
//!
//! `/tmp/kited-$UID` (used when `XDG_RUNTIME_DIR` is unset) is a name any local user can create
//! first. kited makes the directory with `mkdir` (which never follows a symlink), accepts an
//! existing one only when `lstat` shows a real directory owned by this user or root and not
//! writable by others, and never changes the mode of a directory it did not create.

use kite_proto::socket_trust::{self, Distrust};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why the socket's directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    #[error(
        "cannot use the socket directory: {0}; remove it, or set XDG_RUNTIME_DIR or --socket \
         to a private directory"
    )]
    Untrusted(Distrust),
    #[error("cannot create the socket directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Makes sure `dir` exists as this user's private directory (0700 when kited creates it).
pub fn prepare_dir(dir: &Path) -> Result<(), SocketDirError> {
    let create_err = |source| SocketDirError::Create {
        path: dir.to_path_buf(),
        source,
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        if std::fs::symlink_metadata(parent).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(create_err)?;
        }
    }
    // mkdir(2) fails with EEXIST on anything already there, a symlink included, and never
    // follows it; what is there is then judged by lstat alone.
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(create_err(e)),
    }
    socket_trust::check_dir(dir).map_err(SocketDirError::Untrusted)?;
    Ok(())
}

/// An exclusive `flock` on `<socket>.lock`, held from before the stale-socket probe until the
/// socket is bound and listening. Two kiteds started at once on the same stale socket would
/// otherwise both see it stale, and the second to bind would unlink the first one's fresh
/// socket and leave two daemons running. Under the lock the second one's probe finds the
/// first one listening. The lock file itself stays: deleting it would let a third kited lock a
/// new inode while the second still holds the old one. The kernel drops the lock if the
/// process dies while holding it.
pub struct NameLock {
    _file: std::fs::File,
}

/// Why the socket's name could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum NameLockError {
    #[error("another kited holds {0}")]
    Held(PathBuf),
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes [`NameLock`] on the socket `path`, without waiting: a lock already held means another
/// kited owns (or is binding) that socket.
pub fn lock_name(path: &Path) -> Result<NameLock, NameLockError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let io_err = |source| NameLockError::Io {
        path: lock_path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        // Never through a link someone planted in place of the lock file.
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&lock_path)
        .map_err(io_err)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(NameLock { _file: file }),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(NameLockError::Held(lock_path)),
        Err(e) => Err(io_err(e.into())),
    }
}

/// The socket file kited bound. Dropping it removes the file, but only while the path still
/// names the same inode: a socket another kited bound there since is left alone.
pub struct SocketFile {
    path: PathBuf,
    identity: Option<Identity>,
}

/// Device, inode and change time: an inode number alone may be reused once a file is gone.
type Identity = (u64, u64, i64, i64);

impl SocketFile {
    /// Remembers which inode `path` is now (right after binding it).
    pub fn claim(path: &Path) -> SocketFile {
        SocketFile {
            path: path.to_path_buf(),
            identity: identity(path),
        }
    }
}

fn identity(path: &Path) -> Option<Identity> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match identity(&self.path) {
            Some(now) if Some(now) == self.identity => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!("cannot remove the socket {}: {e}", self.path.display());
                }
            }
            Some(_) => tracing::info!(
                "{} is no longer the socket this kited bound; leaving it in place",
                self.path.display()
            ),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_private_and_refuses_links_and_loose_dirs() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("a").join("run");
        prepare_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let link = outer.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            prepare_dir(&link),
            Err(SocketDirError::Untrusted(_))
        ));
        let loose = outer.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_dir(&loose).unwrap_err().to_string();
        assert!(err.contains("can be written by other users"), "{err}");
        // Never chmods what it did not create.
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
    }

    #[test]
    fn removes_only_its_own_inode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "mine").unwrap();
        let mine = SocketFile::claim(&path);
        let other = dir.path().join("other");
        std::fs::write(&other, "theirs").unwrap();
        std::fs::rename(&other, &path).unwrap();
        drop(mine);
        assert!(path.exists());
        let theirs = SocketFile::claim(&path);
        drop(theirs);
        assert!(!path.exists());
    }
}
