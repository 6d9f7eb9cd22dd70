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

/// [`runtime_dir`] for a given `XDG_RUNTIME_DIR` value (`None`, empty or relative: unset).
pub fn runtime_dir_in(xdg_runtime_dir: Option<&str>) -> PathBuf {
    match xdg_runtime_dir.and_then(xdg_base_dir) {
        Some(dir) => dir.join("kited"),
        None => PathBuf::from(format!("/tmp/kited-{}", rustix::process::getuid().as_raw())),
    }
}

/// An `XDG_*_HOME` or `XDG_RUNTIME_DIR` value as the XDG base directory spec reads it: an
/// absolute path, or (empty or relative, which the spec says to ignore) none at all. A relative
/// one would put the socket, config or state wherever the process happens to start.
pub fn xdg_base_dir(value: &str) -> Option<PathBuf> {
    Some(PathBuf::from(value)).filter(|p| p.is_absolute())
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

/// Connects to the Unix socket at `path`, giving up after `timeout` when the listener's
/// backlog stays full (a live but stuck daemon). Reads and writes on the stream time out after
/// `timeout` too. A plain `UnixStream::connect` would wait for room in the backlog for ever.
pub fn connect_bounded(
    path: &Path,
    timeout: std::time::Duration,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use rustix::net::{self as sock, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path)?;
    let fd = sock::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // On Linux a blocking AF_UNIX connect waits for room in the listener's backlog for at most
    // SO_SNDTIMEO, so this also bounds the connect itself.
    sock::sockopt::set_socket_timeout(&fd, sock::sockopt::Timeout::Send, Some(timeout))?;
    sock::sockopt::set_socket_timeout(&fd, sock::sockopt::Timeout::Recv, Some(timeout))?;
    loop {
        match sock::connect(&fd, &addr) {
            Ok(()) => return Ok(fd.into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_or_empty_xdg_values_are_ignored() {
        let fallback = runtime_dir_in(None);
        assert!(fallback.starts_with("/tmp"), "{}", fallback.display());
        assert_eq!(runtime_dir_in(Some("")), fallback);
        assert_eq!(runtime_dir_in(Some("run/user")), fallback);
        assert_eq!(runtime_dir_in(Some("./x")), fallback);
        assert_eq!(
            runtime_dir_in(Some("/run/user/7")),
            PathBuf::from("/run/user/7/kited")
        );
    }

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

    /// A listener whose backlog is full: one pending connection fills a backlog of 0, and
    /// nobody accepts. Returns the listener (keep it alive) and the waiting client.
    fn stuck_listener(path: &Path) -> (rustix::fd::OwnedFd, std::os::unix::net::UnixStream) {
        use rustix::net::{self as sock, AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let fd = sock::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        sock::bind(&fd, &SocketAddrUnix::new(path).unwrap()).unwrap();
        sock::listen(&fd, 0).unwrap();
        let first = connect_bounded(path, std::time::Duration::from_secs(1)).unwrap();
        (fd, first)
    }

    #[test]
    fn connecting_to_a_stuck_listener_gives_up_in_time() {
        let dir = std::env::temp_dir().join(format!("kite-proto-connect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stuck.sock");
        let (_listener, _first) = stuck_listener(&path);
        let started = std::time::Instant::now();
        let err = connect_bounded(&path, std::time::Duration::from_millis(200)).unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err.raw_os_error(), Some(libc_eagain) if libc_eagain == rustix::io::Errno::AGAIN.raw_os_error()),
            "{err}"
        );
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
