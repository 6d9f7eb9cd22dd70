//! The Unix socket server: one NDJSON request per line, one answer each; `watch` streams events.
//!
//! [`handle`] maps a typed `Request` to a typed `Response` and knows nothing of sockets, so each
//! request is testable on its own.

use crate::connection::Connection;
use crate::session::Session;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use kite_proto::{ErrorKind, Request, Response, WireError};
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
        let refusal = Response::error(ErrorKind::BadRequest, "kited serves only its own user");
        let _ = connection.write_line(&refusal.to_line()).await;
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
                    .write_line(&Response::Error(error).to_line())
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
        let may_block = matches!(request, Request::GetToken { wait_secs: Some(_) });
        let answer = tokio::select! {
            _ = shutdown.cancelled() => return,
            answer = handle(&session, request.clone()) => answer,
            _ = connection.hung_up(), if may_block => return,
        };
        if connection.write_line(&answer.to_line()).await.is_err() {
            return;
        }
        match request {
            Request::Watch if answer == Response::Done => {
                stream_events(&mut connection, &session, &shutdown).await;
                return;
            }
            Request::Shutdown => {
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

/// Answers one request. `watch` and `shutdown` only acknowledge here; the connection acts after.
pub async fn handle(session: &Session, request: Request) -> Response {
    match request {
        Request::Ping => Response::Pong {
            version: kite_proto::VERSION.to_string(),
        },
        Request::Status => Response::Status {
            status: Box::new(session.status()),
        },
        Request::GetToken { wait_secs } => {
            match session.get_token(wait_secs.map(Duration::from_secs)).await {
                Ok(token) => Response::Token {
                    access_token: token.access_token.expose().to_string(),
                    api_key: token.api_key,
                    expires_at: token.expires_at,
                },
                Err(e) => Response::Error(e.to_wire()),
            }
        }
        Request::LoginUrl => match session.login_url() {
            Ok((login_url, callback_url)) => Response::LoginUrl {
                login_url,
                callback_url,
            },
            Err(e) => Response::Error(e.to_wire()),
        },
        Request::LoginLink => match crate::login_link::issue(session) {
            Ok(link) => Response::LoginLink {
                link: link.link,
                expires_at: link.expires_at,
            },
            Err(e) => Response::Error(e.to_wire()),
        },
        Request::Exchange {
            request_token,
            callback_url,
        } => {
            let result = match (request_token, callback_url) {
                (Some(token), None) => session.exchange(token.trim()).await,
                (None, Some(url)) => session.exchange_pasted(&url).await,
                _ => {
                    return Response::error(
                        ErrorKind::BadRequest,
                        "exchange needs exactly one of request_token or callback_url",
                    )
                }
            };
            match result {
                Ok(_) => Response::Status {
                    status: Box::new(session.status()),
                },
                Err(e) => Response::Error(e.to_wire()),
            }
        }
        Request::Logout => match session.logout().await {
            Ok(()) => Response::Done,
            Err(e) => Response::Error(e.to_wire()),
        },
        Request::Watch | Request::Shutdown => Response::Done,
    }
}

#[cfg(test)]
mod tests {
    //! `handle` on its own: a real store in a temp dir, a fixed clock, no sockets.
    use super::*;
    use crate::clock::{self, Now};
    use crate::config::{Config, Flags};
    use crate::events::EventBus;
    use crate::settings::Settings;
    use crate::store::Store;
    use crate::token::TokenRecord;
    use std::collections::HashMap;

    struct Fixture {
        session: Session,
        _dir: tempfile::TempDir,
    }

    fn fixture(configured: bool, token: Option<TokenRecord>, now: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut vars = HashMap::from([("HOME".to_string(), dir.path().display().to_string())]);
        if configured {
            vars.insert("KITE_API_KEY".into(), "kitedtestkey0001".into());
            vars.insert("KITE_API_SECRET".into(), "s3cret".into());
            // Nothing listens here: a handler that reached Kite would fail loudly.
            vars.insert("KITE_API_ROOT".into(), "http://127.0.0.1:9".into());
        }
        let flags = Flags {
            profile: "test".into(),
            state_dir: Some(dir.path().join("state")),
            ..Flags::default()
        };
        let config = Config::load(&flags, &move |k| vars.get(k).cloned()).unwrap();
        let store = Store::open(&config.state_dir, "test").unwrap();
        if let Some(token) = token {
            store.save_token(&token).unwrap();
        }
        let fixed = clock::parse_login_time(now)
            .unwrap()
            .with_timezone(&chrono::Utc);
        let now: Now = Arc::new(move || fixed);
        let settings = Settings::new(config, "127.0.0.1:8079".parse().unwrap());
        let session = Session::new(settings, store, EventBus::new(now.clone()), now).unwrap();
        Fixture { session, _dir: dir }
    }

    fn token(expires_at: &str) -> TokenRecord {
        TokenRecord::sample("accesstoken0123456789abcdefghijk", expires_at)
    }

    fn kind(answer: &Response) -> Option<ErrorKind> {
        match answer {
            Response::Error(e) => Some(e.kind),
            _ => None,
        }
    }

    #[tokio::test]
    async fn not_configured_answers() {
        let f = fixture(false, None, "2026-11-23 10:00:00");
        assert!(matches!(
            handle(&f.session, Request::Ping).await,
            Response::Pong { .. }
        ));
        let Response::Status { status } = handle(&f.session, Request::Status).await else {
            panic!("status answer");
        };
        assert!(!status.configured);
        assert_eq!(status.state, kite_proto::TokenState::None);
        assert_eq!(
            kind(&handle(&f.session, Request::LoginUrl).await),
            Some(ErrorKind::NotConfigured)
        );
        let exchange = Request::Exchange {
            request_token: Some("abc".into()),
            callback_url: None,
        };
        assert_eq!(
            kind(&handle(&f.session, exchange).await),
            Some(ErrorKind::NotConfigured)
        );
    }

    #[tokio::test]
    async fn get_token_follows_the_clock() {
        let valid = fixture(
            true,
            Some(token("2026-11-24T06:00:00+05:30")),
            "2026-11-23 10:00:00",
        );
        let answer = handle(&valid.session, Request::GetToken { wait_secs: None }).await;
        assert!(
            matches!(&answer, Response::Token { access_token, .. } if access_token == "accesstoken0123456789abcdefghijk"),
            "{answer:?}"
        );
        // The same record read after 06:00 is dead, whatever the store says.
        let late = fixture(
            true,
            Some(token("2026-11-24T06:00:00+05:30")),
            "2026-11-24 06:00:00",
        );
        let answer = handle(&late.session, Request::GetToken { wait_secs: Some(0) }).await;
        assert_eq!(kind(&answer), Some(ErrorKind::LoginRequired));
    }

    #[tokio::test]
    async fn login_url_carries_a_fresh_state() {
        let f = fixture(true, None, "2026-11-23 10:00:00");
        let Response::LoginUrl {
            login_url,
            callback_url,
        } = handle(&f.session, Request::LoginUrl).await
        else {
            panic!("login url answer");
        };
        assert!(
            login_url.contains("v=3&api_key=kitedtestkey0001&redirect_params=state%3D"),
            "{login_url}"
        );
        assert!(callback_url.ends_with("/auth/callback"));
        let Response::LoginUrl {
            login_url: again, ..
        } = handle(&f.session, Request::LoginUrl).await
        else {
            panic!("login url answer");
        };
        assert_ne!(login_url, again);
    }

    #[tokio::test]
    async fn malformed_exchanges_never_reach_kite() {
        let f = fixture(
            true,
            Some(token("2026-11-24T06:00:00+05:30")),
            "2026-11-23 10:00:00",
        );
        for request in [
            Request::Exchange {
                request_token: None,
                callback_url: None,
            },
            Request::Exchange {
                request_token: Some("a".into()),
                callback_url: Some("b".into()),
            },
            Request::Exchange {
                request_token: Some("<script>".into()),
                callback_url: None,
            },
            Request::Exchange {
                request_token: None,
                callback_url: Some("http://x/?status=cancelled".into()),
            },
        ] {
            assert_eq!(
                kind(&handle(&f.session, request).await),
                Some(ErrorKind::BadRequest)
            );
        }
        // The stored token is untouched.
        assert!(matches!(
            handle(&f.session, Request::GetToken { wait_secs: None }).await,
            Response::Token { .. }
        ));
    }
}
