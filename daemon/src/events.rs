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
        tracing::info!(event = event.kind.name(), "{}", describe(&event));
        let _ = self.sender.send(event.clone());
        event
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }
}

/// One sentence for the log and the desktop: "Logged in as Asha until 06:00 tomorrow".
pub fn describe(event: &Event) -> String {
    match &event.kind {
        EventKind::TokenNew {
            user_name,
            user_id,
            expires_at,
        } => {
            let who = if user_name.is_empty() {
                user_id
            } else {
                user_name
            };
            format!("Logged in as {who} until {}", until(expires_at, &event.at))
        }
        EventKind::TokenExpiring { minutes_left, .. } => format!(
            "Kite token expires in {minutes_left} minute{}",
            if *minutes_left == 1 { "" } else { "s" }
        ),
        EventKind::TokenExpired { expires_at } => {
            format!("Kite token expired at {}", short_time(expires_at))
        }
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

/// "06:00 today", "06:00 tomorrow" or "06:00 on Tue 24 Nov", seen from the moment `now`.
fn until(expires_at: &str, now: &str) -> String {
    match (clock::parse_rfc3339(expires_at), clock::parse_rfc3339(now)) {
        (Some(end), Some(now)) => {
            let days = (end.date_naive() - now.date_naive()).num_days();
            let time = end.format("%H:%M");
            match days {
                0 => format!("{time} today"),
                1 => format!("{time} tomorrow"),
                _ => format!("{time} on {}", end.format("%a %-d %b")),
            }
        }
        _ => expires_at.to_string(),
    }
}

/// "06:00" from an RFC 3339 time (the text itself if it is not one).
fn short_time(time: &str) -> String {
    clock::parse_rfc3339(time).map_or_else(|| time.to_string(), |t| t.format("%H:%M").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, at: &str) -> Event {
        Event {
            kind,
            at: at.into(),
        }
    }

    #[test]
    fn sentences() {
        let new = |expires_at: &str, at: &str| {
            describe(&event(
                EventKind::TokenNew {
                    user_id: "AB1234".into(),
                    user_name: "Asha".into(),
                    expires_at: expires_at.into(),
                },
                at,
            ))
        };
        assert_eq!(
            new("2026-11-24T06:00:00+05:30", "2026-11-23T09:15:00+05:30"),
            "Logged in as Asha until 06:00 tomorrow"
        );
        assert_eq!(
            new("2026-11-24T06:00:00+05:30", "2026-11-24T01:00:00+05:30"),
            "Logged in as Asha until 06:00 today"
        );
        assert_eq!(
            new("2026-11-24T06:00:00+05:30", "2026-11-22T09:00:00+05:30"),
            "Logged in as Asha until 06:00 on Tue 24 Nov"
        );
        let expiring = |minutes_left| {
            describe(&event(
                EventKind::TokenExpiring {
                    minutes_left,
                    expires_at: "2026-11-24T06:00:00+05:30".into(),
                },
                "2026-11-24T05:45:00+05:30",
            ))
        };
        assert_eq!(expiring(15), "Kite token expires in 15 minutes");
        assert_eq!(expiring(1), "Kite token expires in 1 minute");
        assert_eq!(
            describe(&event(
                EventKind::TokenExpired {
                    expires_at: "2026-11-24T06:00:00+05:30".into()
                },
                "2026-11-24T06:00:00+05:30"
            )),
            "Kite token expired at 06:00"
        );
    }
}
