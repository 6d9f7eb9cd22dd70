//! The accept loop both servers share: take connections until shutdown, serve each on its own
//! task of the daemon's task tracker (so a stop waits for the requests in flight), at most a
//! fixed number at once.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After a failed accept (out of descriptors, say), wait this long instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// A flood of failed or refused connections logs one line per this long, not one per
/// connection: a log must not become the next thing to fill the disk.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A listening socket the loop can take connections from.
pub trait Listen {
    type Connection: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Connection = (tokio::net::TcpStream, std::net::SocketAddr);
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send {
        tokio::net::TcpListener::accept(self)
    }
}

impl Listen for tokio::net::UnixListener {
    type Connection = (tokio::net::UnixStream, tokio::net::unix::SocketAddr);
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send {
        tokio::net::UnixListener::accept(self)
    }
}

impl Listen for interprocess::local_socket::tokio::Listener {
    type Connection = interprocess::local_socket::tokio::Stream;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Connection>> + Send {
        interprocess::local_socket::traits::tokio::Listener::accept(self)
    }
}

/// Accepts on `listener` until `shutdown`, running `serve` for each connection on `tasks`.
/// Beyond `max` connections at once, new ones are closed at once. `what` names the server in
/// the log.
pub async fn run<L, S, F>(
    listener: L,
    what: &'static str,
    max: usize,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    mut serve: S,
) where
    L: Listen,
    S: FnMut(L::Connection) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(max));
    let mut failures = Throttle::default();
    let mut refusals = Throttle::default();
    loop {
        let connection = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    if let Some(more) = failures.allow() {
                        tracing::warn!("{what}: accept failed: {e}{more}");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(more) = refusals.allow() {
                tracing::warn!("{what}: too many connections ({max}); closing a new one{more}");
            }
            continue;
        };
        let served = serve(connection);
        tasks.spawn(async move {
            served.await;
            drop(slot);
        });
    }
}

/// Lets one log line through per [`LOG_EVERY`] and counts the ones it held back.
#[derive(Default)]
struct Throttle {
    last: Option<tokio::time::Instant>,
    held_back: u64,
}

impl Throttle {
    /// `Some(suffix)` when a line may be logged now; the suffix counts the lines held back.
    fn allow(&mut self) -> Option<String> {
        let now = tokio::time::Instant::now();
        if self.last.is_some_and(|last| now < last + LOG_EVERY) {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        let suffix = match std::mem::take(&mut self.held_back) {
            0 => String::new(),
            n => format!(" ({n} more since the last report)"),
        };
        Some(suffix)
    }
}
