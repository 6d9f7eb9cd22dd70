//! The Unix socket server: one NDJSON request per line, one answer each; `watch` streams events.
//! The answers themselves come from [`crate::server::ipc::requests`].

pub(crate) mod connection;
pub(crate) mod peer_gone;
pub(crate) mod requests;
pub(crate) mod socket_file;

use crate::server::ipc::connection::Connection;
use crate::session::Session;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use kite_proto::message::{Ack, GetToken};
use kite_proto::{answer_line, ErrorKind, Request, WireError};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a refused peer gets to send its request before it is told no.
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to probe an existing socket file before calling it stale.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Once the daemon stops, how long a write to a client may still take. An answer already
/// computed usually goes out in microseconds; a client that does not read its socket (a stuck
/// `watch`, say) must not hold up the stop, so after this its write is abandoned.
const STOP_WRITE_GRACE: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    #[error("another kited is already listening on {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error(transparent)]
    Dir(#[from] crate::server::ipc::socket_file::SocketDirError),
    #[error(transparent)]
    Lock(crate::server::ipc::socket_file::NameLockError),
    #[error("cannot create the socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the socket at `path`: 0600 in a private directory, replacing a stale file but never a
/// live daemon's socket. The probe and the bind happen under the name's lock, so of two kiteds
/// started at once exactly one binds (the other's probe finds it listening). The caller removes
/// the file at the end ([`crate::server::ipc::socket_file::SocketFile`]).
pub fn bind(path: &Path) -> Result<Listener, IpcError> {
    let bind_err = |source| IpcError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::server::ipc::socket_file::prepare_dir(parent)?;
    }
    let lock = crate::server::ipc::socket_file::lock_name(path).map_err(|e| match e {
        crate::server::ipc::socket_file::NameLockError::Held(_) => {
            IpcError::InUse(path.to_path_buf())
        }
        other => IpcError::Lock(other),
    })?;
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
    // Listening now: a kited that takes the lock next finds this one alive.
    drop(lock);
    Ok(listener)
}

/// Whether a daemon answers on `path`. A connect is enough; one that stays queued for
/// [`PROBE_TIMEOUT`] means a live daemon too busy to accept, whose socket must not be removed.
fn probe_alive(path: &Path) -> bool {
    match kite_proto::socket_path::connect_bounded(path, PROBE_TIMEOUT) {
        Ok(_) => true,
        Err(e) => matches!(
            e.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
            Some(rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT)
        ),
    }
}

/// Accepts connections until `shutdown`, at most `max_connections` at once; each is served on
/// its own task of `tasks`.
pub async fn serve(
    listener: Listener,
    max_connections: usize,
    session: Session,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    let my_uid = rustix::process::geteuid().as_raw();
    let stop = shutdown.clone();
    crate::server::accept::run(
        listener,
        "socket",
        max_connections,
        tasks,
        stop,
        move |stream| serve_connection(stream, session.clone(), shutdown.clone(), my_uid),
    )
    .await;
}

async fn serve_connection(
    stream: Stream,
    session: Session,
    shutdown: CancellationToken,
    my_uid: u32,
) {
    let peer_uid = stream.peer_creds().ok().and_then(|c| c.euid());
    let probe = crate::server::ipc::peer_gone::HangupProbe::of(&stream);
    let mut connection = Connection::new(stream);
    if peer_uid != Some(my_uid) {
        tracing::warn!(?peer_uid, "refused a socket client of another user");
        // Let the client finish writing its request first, so it reads this refusal rather
        // than a broken pipe; nothing it sent is parsed.
        let _ = tokio::time::timeout(REFUSAL_READ_TIMEOUT, connection.read_line()).await;
        let refusal = WireError::new(ErrorKind::BadRequest, "kited serves only its own user");
        let _ = write_until_stop(
            &mut connection,
            &answer_line::<Ack>(&Err(refusal)),
            &shutdown,
        )
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
                if write_until_stop(&mut connection, &answer_line::<Ack>(&Err(error)), &shutdown)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        // A client that gives up on a long `get_token` wait (Ctrl-C, a timeout) must not keep
        // its connection slot until the wait ends, and a stopping daemon answers the wait at
        // once (as if none had been asked for) rather than hang up on it. Nothing else is cut
        // short, not even by a stop: an exchange in flight may already have used up the
        // single-use request token at Kite, and its token must be stored and announced.
        let may_block = matches!(request, Request::GetToken(GetToken { wait_secs: Some(_) }));
        let answer = tokio::select! {
            answer = crate::server::ipc::requests::answer(&session, request.clone()) => answer,
            // End-of-file alone may be a half-close (`nc -N`): wait for the full hang-up.
            _ = async { connection.hung_up().await; probe.closed().await }, if may_block => return,
            _ = shutdown.cancelled(), if may_block => {
                crate::server::ipc::requests::answer(&session, GetToken { wait_secs: None }.into()).await
            }
        };
        if write_until_stop(&mut connection, &answer, &shutdown)
            .await
            .is_err()
        {
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
    let mut events = session.events().subscribe("a watcher");
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.next() => event,
            // Anything the client sends, or its hang-up, ends the watch.
            _ = connection.read_line() => return,
        };
        let Some(event) = event else { return };
        if write_until_stop(connection, &event.to_line(), shutdown)
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Writes `line`, unless the daemon stops and the client still has not taken it
/// [`STOP_WRITE_GRACE`] later: a stop waits for no client that does not read.
async fn write_until_stop(
    connection: &mut Connection<Stream>,
    line: &str,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    tokio::select! {
        written = connection.write_line(line) => written,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(STOP_WRITE_GRACE).await;
        } => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the daemon stopped before the client read its answer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::sync::mpsc;

    /// `bind` on its own thread, with its answer or `None` when it did not finish in `within`.
    fn bind_within(path: &Path, within: Duration) -> Option<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let result =
                runtime.block_on(async { bind(&path).map(drop).map_err(|e| e.to_string()) });
            let _ = tx.send(result);
        });
        rx.recv_timeout(within).ok()
    }

    /// Connects until the listener's backlog is full (nobody accepts); keeps the clients.
    fn fill_backlog(path: &Path) -> Vec<UnixStream> {
        let mut queued = Vec::new();
        while let Ok(stream) =
            kite_proto::socket_path::connect_bounded(path, Duration::from_millis(20))
        {
            queued.push(stream);
            assert!(queued.len() < 100_000, "the backlog never filled");
        }
        queued
    }

    #[test]
    fn a_live_daemon_too_busy_to_accept_keeps_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let _queued = fill_backlog(&path);
        let answer = bind_within(&path, Duration::from_secs(5))
            .expect("the probe of a busy socket must give up in bounded time");
        let err = answer.unwrap_err();
        assert!(err.contains("already listening"), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(UnixListener::bind(&path).unwrap());
        let answer = bind_within(&path, Duration::from_secs(5)).expect("bind finishes");
        assert_eq!(answer, Ok(()));
    }
}
