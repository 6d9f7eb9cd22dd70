//! The event bus: every event is stamped, logged once, and fanned out to all subscribers.

use crate::clock::{self, Now};
use kite_proto::{Event, EventKind};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How many events a slow subscriber may fall behind before it misses some. Events come a few
/// a day; 64 is plenty and bounds memory.
const BACKLOG: usize = 64;

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Event>,
    now: Now,
}

impl EventBus {
    pub fn new(now: Now) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        EventBus { sender, now }
    }

    /// Publishes `kind` now. Having no subscriber is fine.
    pub fn emit(&self, kind: EventKind) -> Event {
        let event = Event {
            kind,
            at: clock::rfc3339(clock::ist((self.now)())),
        };
        tracing::info!(event = event.kind.name(), "{}", event.sentence());
        let _ = self.sender.send(event.clone());
        event
    }

    /// A subscription from now on; `who` names the subscriber in the warning if it falls behind.
    pub fn subscribe(&self, who: &'static str) -> Subscription {
        Subscription {
            receiver: self.sender.subscribe(),
            who,
            missed: false,
        }
    }
}

/// One subscriber's view of the bus: the one place that waits for an event, logs falling
/// behind, and says when the bus is gone.
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    who: &'static str,
    /// Events were dropped since [`Subscription::missed_some`] last said so.
    missed: bool,
}

impl Subscription {
    /// The next event; `None` once the bus is gone. Falling behind is logged (who, and how many
    /// events) and remembered for [`Subscription::missed_some`]; the next event still comes.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!("{} fell {missed} events behind", self.who);
                    self.missed = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event, or `None` at `shutdown` or once the bus is gone.
    pub async fn next_until(&mut self, shutdown: &CancellationToken) -> Option<Event> {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            event = self.next() => event,
        }
    }

    /// Whether events were missed since the last call: a subscriber that keeps something in
    /// step with the events must then catch up in full.
    pub fn missed_some(&mut self) -> bool {
        std::mem::take(&mut self.missed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn lag_is_remembered_and_shutdown_ends_the_wait() {
        let bus = EventBus::new(Arc::new(chrono::Utc::now));
        let mut subscription = bus.subscribe("test");
        for _ in 0..BACKLOG + 3 {
            bus.emit(EventKind::TokenExpired {
                expires_at: String::new(),
            });
        }
        assert!(subscription.next().await.is_some());
        assert!(subscription.missed_some());
        assert!(!subscription.missed_some());
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut quiet = bus.subscribe("quiet");
        assert!(quiet.next_until(&shutdown).await.is_none());
        drop(bus);
        assert!(
            subscription.next().await.is_some(),
            "queued events still come"
        );
    }
}
