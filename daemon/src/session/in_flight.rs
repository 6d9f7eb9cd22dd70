//! The deliveries running on tasks of their own (desktop notifications, `notify.command`, push
//! tries, readiness checks), named, so that a stop can give them a moment and then say which
//! finished and which it abandoned.
//!
//! A delivery never watches for the stop itself: a message half sent is worth finishing. The
//! stop waits a short grace for them all ([`InFlight::settle`]); what is still running after it
//! (a retry waiting out its backoff, a server that does not answer) is aborted and logged by
//! name. Aborting drops the task, so whatever it holds (a child process) is released with it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio_util::task::TaskTracker;

/// The deliveries in flight.
#[derive(Default)]
pub struct InFlight {
    tasks: TaskTracker,
    running: Arc<Mutex<BTreeMap<u64, Running>>>,
    next_id: AtomicU64,
}

struct Running {
    label: String,
    abort: Option<AbortHandle>,
}

/// What a stop did with the deliveries in flight.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// How many were running when the stop began and finished within the grace.
    pub finished: usize,
    /// The labels of those aborted when the grace ran out, oldest first.
    pub abandoned: Vec<String>,
}

/// Takes a delivery off the list when its task ends, by finishing or by being aborted.
struct Listed {
    running: Arc<Mutex<BTreeMap<u64, Running>>>,
    id: u64,
}

impl Drop for Listed {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.id);
    }
}

fn lock(
    running: &Mutex<BTreeMap<u64, Running>>,
) -> std::sync::MutexGuard<'_, BTreeMap<u64, Running>> {
    // The map is only inserted into and removed from: a panic elsewhere cannot leave it torn.
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InFlight {
    /// Runs `delivery` on its own task, listed under `label` ("push token_expired to telegram")
    /// until it ends.
    pub fn spawn<F>(&self, label: impl Into<String>, delivery: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Listed before the task exists, so that even a delivery that ends at once is removed
        // after it was added, never before.
        lock(&self.running).insert(
            id,
            Running {
                label: label.into(),
                abort: None,
            },
        );
        let listed = Listed {
            running: self.running.clone(),
            id,
        };
        let handle = self.tasks.spawn(async move {
            let _listed = listed;
            delivery.await;
        });
        if let Some(entry) = lock(&self.running).get_mut(&id) {
            entry.abort = Some(handle.abort_handle());
        }
    }

    /// The labels of the deliveries running now, oldest first.
    #[cfg(test)]
    pub fn labels(&self) -> Vec<String> {
        lock(&self.running)
            .values()
            .map(|r| r.label.clone())
            .collect()
    }

    /// At a stop: no new deliveries count after this; waits up to `grace` for the running ones,
    /// then aborts the rest and says which.
    pub async fn settle(&self, grace: Duration) -> Settled {
        self.tasks.close();
        let before = lock(&self.running).len();
        if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            return Settled {
                finished: before,
                abandoned: Vec::new(),
            };
        }
        let left: Vec<Running> = std::mem::take(&mut *lock(&self.running))
            .into_values()
            .collect();
        let mut abandoned = Vec::with_capacity(left.len());
        for running in left {
            if let Some(abort) = running.abort {
                abort.abort();
            }
            abandoned.push(running.label);
        }
        // Aborted tasks drop their futures on their next poll; wait for that, so that what they
        // held (a child process) is released before the stop goes on.
        self.tasks.wait().await;
        Settled {
            finished: before.saturating_sub(abandoned.len()),
            abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_waits_for_quick_deliveries_and_abandons_slow_ones_by_name() {
        let in_flight = InFlight::default();
        let (quick_done, quick) = tokio::sync::oneshot::channel::<()>();
        in_flight.spawn("push token_new to ntfy", async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = quick_done.send(());
        });
        let (slow_dropped_tx, slow_dropped) = tokio::sync::oneshot::channel::<()>();
        in_flight.spawn("push token_expired to telegram", async move {
            struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    if let Some(tx) = self.0.take() {
                        let _ = tx.send(());
                    }
                }
            }
            let _guard = OnDrop(Some(slow_dropped_tx));
            std::future::pending::<()>().await;
        });
        assert_eq!(
            in_flight.labels(),
            ["push token_new to ntfy", "push token_expired to telegram"]
        );
        // The grace is fifty times what the quick one needs, and the slow one never ends.
        let settled = in_flight.settle(Duration::from_secs(1)).await;
        assert_eq!(
            settled,
            Settled {
                finished: 1,
                abandoned: vec!["push token_expired to telegram".into()],
            }
        );
        assert!(quick.await.is_ok(), "the quick delivery ran to its end");
        assert!(
            slow_dropped.await.is_ok(),
            "the abandoned delivery was dropped, releasing what it held"
        );
        assert!(in_flight.labels().is_empty());
    }

    #[tokio::test]
    async fn finished_deliveries_leave_the_list() {
        let in_flight = InFlight::default();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        in_flight.spawn("desktop token_new", async move {
            let _ = done_tx.send(());
        });
        assert!(done.await.is_ok());
        let settled = in_flight.settle(Duration::from_secs(1)).await;
        assert!(settled.abandoned.is_empty());
        assert!(in_flight.labels().is_empty());
    }
}
