//! The Unix socket server: one NDJSON request per line, one answer each; `watch` streams events.
//! The answers themselves come from [`crate::requests`].

use crate::connection::Connection;
use crate::session::Session;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use kite_proto::message::{Ack, GetToken};
use kite_proto::{answer_line, ErrorKind, Request, WireError};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Concurrent connections served; more are closed at once. Trading programs open one each;
/// a thousand is far beyond real use and keeps a runaway client from exhausting descriptors.
const MAX_CONNECTIONS: usize = 1024;
/// How long a refused peer gets to send its request before it is told no.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to probe an existing socket file before calling it stale.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("another kited is already listening on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error(transparent)]
    Dir(#[from] crate::socket_file::SocketDirError),
    #[error("cannot create the socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the socket at `path`: 0600 in a private directory, replacing a stale file but never a
/// live daemon's socket. The caller removes the file at the end ([`crate::socket_file::SocketFile`]).
pub fn bind(path: &Path) -> Result<Listener, IpcError> {
    let bind_err = |source| IpcError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::socket_file::prepare_dir(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(IpcError::NotASocket(path.to_path_buf()))
        }
        Ok(_) => {
            if probe_alive(path) {
                return Err(IpcError::InUse(path.to_path_buf()));
            }
            tracing::info!(path = %path.display(), "removing a stale socket left by a crashed kited");
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Err(_) => {}
    }
    let name = path.to_fs_name::<GenericFilePath>().map_err(bind_err)?;
    let listener = ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .reclaim_name(false)
        .create_tokio()
        .map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Whether a daemon answers on `path` (a connect is enough).
fn probe_alive(path: &Path) -> bool {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => {
            let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
            true
        }
        Err(_) => false,
    }
}

/// Accepts connections until `shutdown`; each is served on its own task.
pub async fn serve(listener: Listener, session: Session, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let my_uid = rustix::process::geteuid().as_raw();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("socket accept failed: {e}");
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("too many connections ({MAX_CONNECTIONS}); closing a new one");
            continue;
        };
        let session = session.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(stream, session, shutdown, my_uid).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: Stream,
    session: Session,
    shutdown: CancellationToken,
    my_uid: u32,
) {
    let peer_uid = stream.peer_creds().ok().and_then(|c| c.euid());
    let mut connection = Connection::new(stream);
    if peer_uid != Some(my_uid) {
        tracing::warn!(?peer_uid, "refused a socket client of another user");
        // Let the client finish writing its request first, so it reads this refusal rather
        // than a broken pipe; nothing it sent is parsed.
        let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT, connection.read_line()).await;
        let refusal = WireError::new(ErrorKind::BadRequest, "kited serves only its own user");
        let _ = connection
            .write_line(&answer_line::<Ack>(&Err(refusal)))
            .await;
        return;
    }
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => return,
            line = connection.read_line() => line,
        };
        let request = match line {
            Ok(Some(Ok(line))) => Request::parse(&line),
            Ok(Some(Err(too_long))) => Err(WireError::bad_request(format!("request {too_long}"))),
            Ok(None) | Err(_) => return,
        };
        let request = match request {
            Ok(request) => request,
            Err(error) => {
                if connection
                    .write_line(&answer_line::<Ack>(&Err(error)))
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        // A client that gives up on a long `get_token` wait (Ctrl-C, a timeout) must not keep
        // its connection slot until the wait ends. Nothing else is cancelled: an exchange in
        // flight may already have used up the single-use request token at Kite.
        let may_block = matches!(request, Request::GetToken(GetToken { wait_secs: Some(_) }));
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = crate::requests::answer(&session, request.clone()) => answer,
            _ = connection.hung_up(), if may_block => return,
        };
        if connection.write_line(&answer).await.is_err() {
            return;
        }
        match request {
            Request::Watch(_) => {
                stream_events(&mut connection, &session, &shutdown).await;
                return;
            }
            Request::Shutdown(_) => {
                tracing::info!("shutdown requested over the socket");
                shutdown.cancel();
                return;
            }
            _ => {}
        }
    }
}

/// Sends every event as a line until the client hangs up or the daemon stops.
async fn stream_events(
    connection: &mut Connection<Stream>,
    session: &Session,
    shutdown: &CancellationToken,
) {
    let mut events = session.events().subscribe();
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => event,
            // Anything the client sends, or its hang-up, ends the watch.
            _ = connection.read_line() => return,
        };
        match event {
            Ok(event) => {
                if connection.write_line(&event.to_line()).await.is_err() {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!("a watcher fell {missed} events behind");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
