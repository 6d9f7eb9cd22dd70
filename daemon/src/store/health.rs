//! While the token store fails (a full disk), retries it every few seconds until a write works
//! again, so `status` and `/healthz` recover by themselves once space is freed. Idle otherwise:
//! nothing wakes while the store is healthy.

use crate::session::Session;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a failing store is retried: soon enough that freeing space shows at once, rare
/// enough that a disk that stays full costs nothing.
const RETRY_EVERY: Duration = Duration::from_secs(2);

pub async fn run(session: Session, shutdown: CancellationToken) {
    let store = session.store();
    let mut health = store.watch_health();
    loop {
        // Sleep until the store starts failing.
        while health.borrow_and_update().is_none() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = health.changed() => if changed.is_err() { return },
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
        // A write that fails again keeps the store marked failing (and logs nothing new).
        let _ = session.ensure_store_writable().await;
    }
}
