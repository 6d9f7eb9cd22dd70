//! Binds `http.public_listen`, the reverse proxy's way in: a TCP port or a Unix socket where
//! every request is a stranger's from the internet, whatever its `Host` says.
//!
//! A Unix socket file is made mode 0666: the proxy runs as another user (caddy, www-data) and
//! must connect, and the socket serves nothing beyond what the internet already reaches through
//! that proxy. Who may connect is decided by the directory the person puts it in (the operations
//! guide: a directory owned by kited's user, group the proxy's, mode 0750).

use crate::config::public_listen::PublicListen;
use crate::server::ipc::socket_file::SocketFile;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The mode of the public socket file: connectable by the proxy's user (see the module docs).
const SOCKET_MODE: u32 = 0o666;
/// A connect that neither succeeds nor fails within this long means a live, busy kited.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The bound public listener.
pub enum PublicListener {
    Tcp(tokio::net::TcpListener),
    /// The listener, and the file to remove at the end (only if it is still ours).
    Unix(tokio::net::UnixListener, SocketFile),
}

/// Why `http.public_listen` cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum PublicListenError {
    #[error("cannot listen on {addr} (http.public_listen): {source}")]
    Tcp {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot create the socket {path} (http.public_listen): {source}; its directory must \
         exist and be writable by kited's user"
    )]
    Unix {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} (http.public_listen) exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("another program is already listening on {0} (http.public_listen)")]
    InUse(PathBuf),
}

impl PublicListener {
    pub async fn bind(listen: &PublicListen) -> Result<PublicListener, PublicListenError> {
        match listen {
            PublicListen::Tcp(addr) => tokio::net::TcpListener::bind(addr)
                .await
                .map(PublicListener::Tcp)
                .map_err(|source| PublicListenError::Tcp {
                    addr: *addr,
                    source,
                }),
            PublicListen::Unix(path) => bind_unix(path),
        }
    }

    /// Where it listens, for the log.
    pub fn describe(&self) -> String {
        match self {
            PublicListener::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            PublicListener::Unix(listener, _) => listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

fn bind_unix(path: &Path) -> Result<PublicListener, PublicListenError> {
    let unix_err = |source| PublicListenError::Unix {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(PublicListenError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => {
            if kite_proto::socket_path::connect_bounded(path, PROBE_TIMEOUT).is_ok() {
                return Err(PublicListenError::InUse(path.to_path_buf()));
            }
            tracing::info!(path = %path.display(), "removing a stale public socket");
            std::fs::remove_file(path).map_err(unix_err)?;
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(unix_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(unix_err)?;
    Ok(PublicListener::Unix(listener, SocketFile::claim(path)))
}
