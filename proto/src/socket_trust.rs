//! Whether a socket, its directory and the process behind it belong to this user.
//!
//! Without `XDG_RUNTIME_DIR` the socket lives in `/tmp/kited-$UID`, a name any local user can
//! take first. kited and kitectl therefore trust a directory only when it is a real directory
//! (not a symlink), owned by this user or root, and not writable by anyone else; a socket file
//! only when it is a socket owned by this user or root; and a daemon only when the kernel says
//! (`SO_PEERCRED`) that it runs as this user or root.

use std::fmt;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// What is wrong with a path or a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A symbolic link where a directory or socket must be: kited never follows one there.
    Symlink,
    /// Something other than a directory where the socket's directory must be.
    NotADirectory,
    /// Something other than a socket at the socket's path.
    NotASocket,
    /// Owned by another user (the uid).
    OwnedBy(u32),
    /// Writable by the group or by everyone (the permission bits).
    WritableByOthers(u32),
    /// The process listening on the socket runs as another user (the uid).
    PeerIsOtherUser(u32),
    /// The kernel would not say (the error text).
    Unknown(String),
}

/// A path (or the daemon behind it) kitectl and kited must not trust, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distrust {
    pub path: PathBuf,
    pub problem: Problem,
}

impl fmt::Display for Distrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        let me = my_uid();
        match &self.problem {
            Problem::Symlink => write!(f, "{path} is a symbolic link, not kited's own file"),
            Problem::NotADirectory => write!(f, "{path} is not a directory"),
            Problem::NotASocket => write!(f, "{path} is not a socket"),
            Problem::OwnedBy(uid) => write!(
                f,
                "{path} belongs to uid {uid}, not to you (uid {me}): another user created it \
                 first, so it cannot be trusted"
            ),
            Problem::WritableByOthers(mode) => write!(
                f,
                "{path} can be written by other users (mode {mode:04o}), so it cannot be trusted"
            ),
            Problem::PeerIsOtherUser(uid) => write!(
                f,
                "the process listening on {path} runs as uid {uid}, not as you (uid {me}): it is \
                 not your kited"
            ),
            Problem::Unknown(why) => write!(f, "cannot check {path}: {why}"),
        }
    }
}

impl std::error::Error for Distrust {}

fn my_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// This user, or root (who can impersonate anyone anyway).
fn trusted_uid(uid: u32) -> bool {
    uid == my_uid() || uid == 0
}

fn distrust(path: &Path, problem: Problem) -> Distrust {
    Distrust {
        path: path.to_path_buf(),
        problem,
    }
}

/// `lstat` of `path`: `Ok(None)` when nothing is there.
fn lstat(path: &Path) -> Result<Option<rustix::fs::Stat>, Distrust> {
    match rustix::fs::lstat(path) {
        Ok(stat) => Ok(Some(stat)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
        Err(e) => Err(distrust(path, Problem::Unknown(e.to_string()))),
    }
}

/// Checks the directory that holds (or will hold) the socket. `Ok(false)`: it does not exist.
///
/// A world-writable directory is accepted only with the sticky bit and owned by root (`/tmp`
/// itself, for `--socket /tmp/x.sock`): there nobody can replace another user's file, and the
/// socket file's own owner is checked.
pub fn check_dir(dir: &Path) -> Result<bool, Distrust> {
    let Some(stat) = lstat(dir)? else {
        return Ok(false);
    };
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    if kind == rustix::fs::FileType::Symlink {
        return Err(distrust(dir, Problem::Symlink));
    }
    if kind != rustix::fs::FileType::Directory {
        return Err(distrust(dir, Problem::NotADirectory));
    }
    if !trusted_uid(stat.st_uid) {
        return Err(distrust(dir, Problem::OwnedBy(stat.st_uid)));
    }
    let mode = stat.st_mode & 0o7777;
    let sticky_root = mode & 0o1000 != 0 && stat.st_uid == 0;
    if mode & 0o022 != 0 && !sticky_root {
        return Err(distrust(dir, Problem::WritableByOthers(mode & 0o777)));
    }
    Ok(true)
}

/// Checks the socket file itself. `Ok(false)`: nothing is there.
pub fn check_socket_file(path: &Path) -> Result<bool, Distrust> {
    let Some(stat) = lstat(path)? else {
        return Ok(false);
    };
    let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
    if kind == rustix::fs::FileType::Symlink {
        return Err(distrust(path, Problem::Symlink));
    }
    if kind != rustix::fs::FileType::Socket {
        return Err(distrust(path, Problem::NotASocket));
    }
    if !trusted_uid(stat.st_uid) {
        return Err(distrust(path, Problem::OwnedBy(stat.st_uid)));
    }
    Ok(true)
}

/// How many symbolic links in a row a socket path may go through: a link to a link is plenty,
/// and a bound ends a loop.
const MAX_LINK_HOPS: usize = 8;

/// Checks the socket's directory and then the file, as a client does before connecting.
///
/// The last component may be a symbolic link (`--socket ~/kited.sock` pointing at the runtime
/// socket) when the link itself is trusted: owned by this user or root, in a directory that
/// passes [`check_dir`]. Its target is then checked the same way, directory and file. A link in
/// place of a directory is still refused, as is a link someone else owns.
pub fn check_socket_path(path: &Path) -> Result<(), Distrust> {
    let mut path = path.to_path_buf();
    for _ in 0..=MAX_LINK_HOPS {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = dir {
            if !check_dir(dir)? {
                return Ok(());
            }
        }
        match own_link_target(&path)? {
            Some(target) => path = dir.map_or(target.clone(), |dir| dir.join(target)),
            None => return check_socket_file(&path).map(|_| ()),
        }
    }
    Err(distrust(
        &path,
        Problem::Unknown(format!("more than {MAX_LINK_HOPS} symbolic links in a row")),
    ))
}

/// The target of `path` when it is a symbolic link this user or root owns (as written in the
/// link, perhaps relative to its directory); `None` when `path` is no link.
fn own_link_target(path: &Path) -> Result<Option<PathBuf>, Distrust> {
    let Some(stat) = lstat(path)? else {
        return Ok(None);
    };
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Symlink {
        return Ok(None);
    }
    if !trusted_uid(stat.st_uid) {
        return Err(distrust(path, Problem::OwnedBy(stat.st_uid)));
    }
    std::fs::read_link(path)
        .map(Some)
        .map_err(|e| distrust(path, Problem::Unknown(e.to_string())))
}

/// Checks, on a connected socket, that the daemon at `path` runs as this user or root.
pub fn check_peer(socket: impl AsFd, path: &Path) -> Result<(), Distrust> {
    let creds = rustix::net::sockopt::socket_peercred(socket)
        .map_err(|e| distrust(path, Problem::Unknown(e.to_string())))?;
    let uid = creds.uid.as_raw();
    if trusted_uid(uid) {
        Ok(())
    } else {
        Err(distrust(path, Problem::PeerIsOtherUser(uid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kite-proto-trust-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn own_private_dir_is_trusted_and_loose_or_linked_ones_are_not() {
        let dir = scratch("dirs");
        assert_eq!(check_dir(&dir), Ok(true));
        assert_eq!(check_dir(&dir.join("missing")), Ok(false));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            check_dir(&dir).unwrap_err().problem,
            Problem::WritableByOthers(0o777)
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert_eq!(check_dir(&link).unwrap_err().problem, Problem::Symlink);
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            check_dir(&file).unwrap_err().problem,
            Problem::NotADirectory
        );
        assert_eq!(
            check_socket_file(&file).unwrap_err().problem,
            Problem::NotASocket
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_own_link_to_a_socket_is_followed_and_a_linked_dir_is_not() {
        let dir = scratch("links");
        let socket = dir.join("real.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let link = dir.join("link.sock");
        std::os::unix::fs::symlink("real.sock", &link).unwrap();
        assert_eq!(check_socket_path(&link), Ok(()));
        // A link to a link, absolute this time.
        let link2 = dir.join("link2.sock");
        std::os::unix::fs::symlink(&link, &link2).unwrap();
        assert_eq!(check_socket_path(&link2), Ok(()));
        // A link to something that is no socket is judged by what it points at.
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let to_file = dir.join("to-file.sock");
        std::os::unix::fs::symlink(&file, &to_file).unwrap();
        assert_eq!(
            check_socket_path(&to_file).unwrap_err().problem,
            Problem::NotASocket
        );
        // A loop ends.
        let looped = dir.join("loop.sock");
        std::os::unix::fs::symlink("loop.sock", &looped).unwrap();
        assert!(matches!(
            check_socket_path(&looped).unwrap_err().problem,
            Problem::Unknown(_)
        ));
        // A directory link is refused, even to this user's own directory.
        let dir_link = dir.join("dirlink");
        std::os::unix::fs::symlink(&dir, &dir_link).unwrap();
        assert_eq!(
            check_socket_path(&dir_link.join("real.sock"))
                .unwrap_err()
                .problem,
            Problem::Symlink
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn messages_name_the_path_and_the_problem() {
        let text = distrust(Path::new("/tmp/kited-1000"), Problem::OwnedBy(1001)).to_string();
        assert!(
            text.starts_with("/tmp/kited-1000 belongs to uid 1001"),
            "{text}"
        );
        let text = distrust(Path::new("/x.sock"), Problem::PeerIsOtherUser(7)).to_string();
        assert!(text.contains("/x.sock") && text.contains("uid 7"), "{text}");
    }
}
