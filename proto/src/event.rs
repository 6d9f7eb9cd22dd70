//! Events the daemon publishes to `watch` subscribers, `notify.command` and the desktop.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happened. Serialized with `"event": "<name>"` beside its fields. Never carries a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A new token was stored.
    TokenNew {
        user_id: String,
        user_name: String,
        expires_at: String,
    },
    /// The token expires soon.
    TokenExpiring {
        minutes_left: i64,
        expires_at: String,
    },
    /// The token passed its cutoff.
    TokenExpired { expires_at: String },
    /// Kite refused the token, or it was logged out.
    TokenInvalidated { reason: String },
    /// The pre-market reminder: no valid token exists.
    LoginRequired { login_url: Option<String> },
    /// A verified order postback from Kite.
    OrderUpdate { order: Value },
}

impl EventKind {
    /// The wire name, also put in `KITED_EVENT` for `notify.command`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TokenNew { .. } => "token_new",
            EventKind::TokenExpiring { .. } => "token_expiring",
            EventKind::TokenExpired { .. } => "token_expired",
            EventKind::TokenInvalidated { .. } => "token_invalidated",
            EventKind::LoginRequired { .. } => "login_required",
            EventKind::OrderUpdate { .. } => "order_update",
        }
    }
}

/// An event with the moment it happened (RFC 3339 with offset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(flatten)]
    pub kind: EventKind,
    pub at: String,
}

impl Event {
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("an Event always serializes");
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape() {
        let event = Event {
            kind: EventKind::TokenExpiring {
                minutes_left: 15,
                expires_at: "2026-11-24T06:00:00+05:30".into(),
            },
            at: "2026-11-24T05:45:00+05:30".into(),
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["event"], "token_expiring");
        assert_eq!(value["minutes_left"], 15);
        assert_eq!(value["at"], "2026-11-24T05:45:00+05:30");
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
        assert_eq!(event.kind.name(), "token_expiring");
    }
}
