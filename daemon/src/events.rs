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
        tracing::info!(event = event.kind.name(), "{}", describe(&event.kind));
        let _ = self.sender.send(event.clone());
        event
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

/// One sentence for the log and the desktop.
pub fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::TokenNew {
            user_name,
            user_id,
            expires_at,
        } => format!("Logged in as {user_name} ({user_id}) until {expires_at}"),
        EventKind::TokenExpiring { minutes_left, .. } => {
            format!("Kite token expires in {minutes_left} minutes")
        }
        EventKind::TokenExpired { expires_at } => format!("Kite token expired at {expires_at}"),
        EventKind::TokenInvalidated { reason } => format!("Kite token invalidated: {reason}"),
        EventKind::LoginRequired { .. } => "Kite login needed before market open".to_string(),
        EventKind::OrderUpdate { order } => format!(
            "Order {} {}",
            order
                .get("order_id")
                .and_then(|v| v.as_str())
                .unwrap_or("?"),
            order
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or("updated")
        ),
    }
}
