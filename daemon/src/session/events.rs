//! The event bus: every event is stamped, logged once, and fanned out to all subscribers.

use crate::clock::{self, Now};
use kite_proto::{Event, EventKind};
use tokio::sync::broadcast;

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

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}
