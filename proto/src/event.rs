//! Events the daemon publishes to `watch` subscribers, `notify.command` and the desktop, and
//! the one sentence that says each of them to a person (the log, the desktop, `kitectl watch`).

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
    /// `hooks.env_file` could not be rewritten: it may still offer an old token.
    EnvFileFailed { path: String, reason: String },
    /// The morning readiness check passed: every check is listed.
    MarketReady { checks: Vec<Check> },
    /// The morning readiness check found a problem: every check is listed, failed or not.
    MarketNotReady { checks: Vec<Check> },
}

/// One readiness check (`token`, `kite`, `ip`, `clock`, `sinks`, `push`): passed or not, and one
/// sentence that says what was seen and, when it failed, what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn passed(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
        }
    }

    /// `token: ok — logged in as Asha (AB1234) until 06:00 IST`, as `kitectl doctor` prints it.
    pub fn line(&self) -> String {
        let verdict = if self.ok { "ok" } else { "failed" };
        format!("{}: {verdict} \u{2014} {}", self.name, self.detail)
    }
}

/// The name of each kind of event without its fields: what `push.events` lists, what
/// `KITED_EVENT` says, and what code matches on. Spelled on the wire as `EventKind`'s tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventName {
    TokenNew,
    TokenExpiring,
    TokenExpired,
    TokenInvalidated,
    LoginRequired,
    OrderUpdate,
    EnvFileFailed,
    MarketReady,
    MarketNotReady,
}

impl EventName {
    /// Every name, in the order people read them.
    pub const ALL: [EventName; 9] = [
        EventName::LoginRequired,
        EventName::TokenExpiring,
        EventName::TokenExpired,
        EventName::TokenInvalidated,
        EventName::TokenNew,
        EventName::MarketReady,
        EventName::MarketNotReady,
        EventName::OrderUpdate,
        EventName::EnvFileFailed,
    ];

    /// The wire name: `token_new`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::TokenNew => "token_new",
            EventName::TokenExpiring => "token_expiring",
            EventName::TokenExpired => "token_expired",
            EventName::TokenInvalidated => "token_invalidated",
            EventName::LoginRequired => "login_required",
            EventName::OrderUpdate => "order_update",
            EventName::EnvFileFailed => "env_file_failed",
            EventName::MarketReady => "market_ready",
            EventName::MarketNotReady => "market_not_ready",
        }
    }

    /// The name spelled `text`, if there is one.
    pub fn parse(text: &str) -> Option<EventName> {
        EventName::ALL
            .into_iter()
            .find(|name| name.as_str() == text)
    }
}

impl std::fmt::Display for EventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventKind {
    /// Which kind of event this is, without its fields.
    pub fn event_name(&self) -> EventName {
        match self {
            EventKind::TokenNew { .. } => EventName::TokenNew,
            EventKind::TokenExpiring { .. } => EventName::TokenExpiring,
            EventKind::TokenExpired { .. } => EventName::TokenExpired,
            EventKind::TokenInvalidated { .. } => EventName::TokenInvalidated,
            EventKind::LoginRequired { .. } => EventName::LoginRequired,
            EventKind::OrderUpdate { .. } => EventName::OrderUpdate,
            EventKind::EnvFileFailed { .. } => EventName::EnvFileFailed,
            EventKind::MarketReady { .. } => EventName::MarketReady,
            EventKind::MarketNotReady { .. } => EventName::MarketNotReady,
        }
    }

    /// The wire name, also put in `KITED_EVENT` for `notify.command`.
    pub fn name(&self) -> &'static str {
        self.event_name().as_str()
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
        crate::frame::line_of(self)
    }

    /// One sentence for a person: "Logged in as Asha until 06:00 tomorrow".
    pub fn sentence(&self) -> String {
        match &self.kind {
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
                format!(
                    "Logged in as {who} until {}",
                    until(expires_at, &self.at, "")
                )
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
            EventKind::OrderUpdate { order } => format!("Order {}", order_summary(order)),
            EventKind::EnvFileFailed { path, reason } => {
                format!("kited cannot rewrite {path}: {reason}")
            }
            EventKind::MarketReady { .. } => "Ready for the market: every check passed".to_string(),
            EventKind::MarketNotReady { checks } => {
                let failed = checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| format!("{} ({})", c.name, c.detail))
                    .collect::<Vec<_>>()
                    .join("; ");
                format!("Not ready for the market: {failed}")
            }
        }
    }
}

/// "06:00 today", "06:00 tomorrow" or "06:00 on Tue 24 Nov", seen from the moment `now`, both
/// RFC 3339 in the daemon's offset (IST); `zone` goes after the time (" IST").
pub fn until(expires_at: &str, now: &str, zone: &str) -> String {
    match (parse_time(expires_at), parse_time(now)) {
        (Some(end), Some(now)) => {
            let days = (end.date_naive() - now.date_naive()).num_days();
            let time = format!("{}{zone}", end.format("%H:%M"));
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
pub fn short_time(time: &str) -> String {
    parse_time(time).map_or_else(|| time.to_string(), |t| t.format("%H:%M").to_string())
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(text).ok()
}

/// "151220000000000 COMPLETE BUY 10 INFY" from whichever of those fields a postback carries.
fn order_summary(order: &Value) -> String {
    let fields = [
        "order_id",
        "status",
        "transaction_type",
        "quantity",
        "tradingsymbol",
    ];
    let summary = fields
        .iter()
        .filter_map(|key| match order.get(*key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join(" ");
    if summary.is_empty() {
        "updated".into()
    } else {
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event of every kind.
    fn one_of_each() -> Vec<EventKind> {
        let checks = vec![Check::passed("token", "ok")];
        vec![
            EventKind::TokenNew {
                user_id: "AB1234".into(),
                user_name: "Asha".into(),
                expires_at: "2026-11-24T06:00:00+05:30".into(),
            },
            EventKind::TokenExpiring {
                minutes_left: 15,
                expires_at: "2026-11-24T06:00:00+05:30".into(),
            },
            EventKind::TokenExpired {
                expires_at: "2026-11-24T06:00:00+05:30".into(),
            },
            EventKind::TokenInvalidated {
                reason: "logout".into(),
            },
            EventKind::LoginRequired { login_url: None },
            EventKind::OrderUpdate {
                order: serde_json::json!({}),
            },
            EventKind::EnvFileFailed {
                path: "/x".into(),
                reason: "denied".into(),
            },
            EventKind::MarketReady {
                checks: checks.clone(),
            },
            EventKind::MarketNotReady { checks },
        ]
    }

    #[test]
    fn every_event_is_in_the_protocol_document() {
        let doc = include_str!("../../docs/protocol.md");
        for name in EventName::ALL {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/protocol.md does not describe the {name} event"
            );
        }
    }

    #[test]
    fn every_kind_has_a_name_and_names_round_trip() {
        let kinds = one_of_each();
        let mut named: Vec<EventName> = kinds.iter().map(EventKind::event_name).collect();
        for kind in &kinds {
            // The tag on the wire is the name.
            let wire = serde_json::to_value(kind).unwrap();
            assert_eq!(wire["event"], kind.name(), "{kind:?}");
        }
        named.sort_by_key(|n| n.as_str());
        named.dedup();
        assert_eq!(named.len(), EventName::ALL.len(), "one name per kind");
        for name in EventName::ALL {
            assert!(named.contains(&name), "{name} names no kind");
            assert_eq!(EventName::parse(name.as_str()), Some(name));
            let wire = serde_json::to_value(name).unwrap();
            assert_eq!(wire, name.as_str());
            assert_eq!(serde_json::from_value::<EventName>(wire).unwrap(), name);
        }
        assert_eq!(EventName::parse("token_old"), None);
    }

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

    fn event(kind: EventKind, at: &str) -> Event {
        Event {
            kind,
            at: at.into(),
        }
    }

    #[test]
    fn sentences() {
        let new = |expires_at: &str, at: &str| {
            event(
                EventKind::TokenNew {
                    user_id: "AB1234".into(),
                    user_name: "Asha".into(),
                    expires_at: expires_at.into(),
                },
                at,
            )
            .sentence()
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
            event(
                EventKind::TokenExpiring {
                    minutes_left,
                    expires_at: "2026-11-24T06:00:00+05:30".into(),
                },
                "2026-11-24T05:45:00+05:30",
            )
            .sentence()
        };
        assert_eq!(expiring(15), "Kite token expires in 15 minutes");
        assert_eq!(expiring(1), "Kite token expires in 1 minute");
        let at = "2026-11-24T06:00:00+05:30";
        let expired = EventKind::TokenExpired {
            expires_at: at.into(),
        };
        assert_eq!(event(expired, at).sentence(), "Kite token expired at 06:00");
        let order = EventKind::OrderUpdate {
            order: serde_json::json!({"order_id": "151220000000000", "status": "COMPLETE",
                "transaction_type": "BUY", "quantity": 1, "tradingsymbol": "SBIN"}),
        };
        assert_eq!(
            event(order, at).sentence(),
            "Order 151220000000000 COMPLETE BUY 1 SBIN"
        );
        let checks = vec![
            Check::passed("token", "logged in"),
            Check::failed(
                "ip",
                "this host sends from 198.51.100.9, registered: 203.0.113.7",
            ),
        ];
        assert_eq!(
            event(EventKind::MarketNotReady { checks }, at).sentence(),
            "Not ready for the market: ip (this host sends from 198.51.100.9, registered: \
             203.0.113.7)"
        );
        let ready = EventKind::MarketReady { checks: vec![] };
        assert_eq!(
            event(ready, at).sentence(),
            "Ready for the market: every check passed"
        );
    }

    #[test]
    fn readiness_wire_shape() {
        let event = Event {
            kind: EventKind::MarketNotReady {
                checks: vec![Check::failed("clock", "5 s behind Kite")],
            },
            at: "2026-11-24T08:50:00+05:30".into(),
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "market_not_ready", "at": "2026-11-24T08:50:00+05:30",
                "checks": [{"name": "clock", "ok": false, "detail": "5 s behind Kite"}]})
        );
        assert_eq!(Check::failed("ip", "x").line(), "ip: failed \u{2014} x");
    }
}
