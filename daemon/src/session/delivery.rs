//! How the latest delivery to each push channel or sink went, for the `push` and `sinks`
//! readiness checks. Deliverers record into it; nothing here sends anything.
//!
//! A target is failing as soon as a try for its most recent message failed and no later try
//! for that message succeeded (retries may still be running). Outcomes of older messages that
//! finish late change nothing: they say nothing about what the target does now.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Where one target stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Configured, nothing sent yet.
    NothingDue,
    /// The most recent message is on its way (no outcome yet); `last_error` is from the message
    /// before it, when that one failed.
    Sending {
        last_error: Option<String>,
    },
    Delivered,
    Failing(String),
}

impl Health {
    /// Why the target is failing, if it is.
    pub fn error(&self) -> Option<&str> {
        match self {
            Health::Failing(e) => Some(e),
            Health::Sending { last_error } => last_error.as_deref(),
            Health::NothingDue | Health::Delivered => None,
        }
    }
}

#[derive(Debug)]
struct Target {
    /// The number of the most recent message.
    latest: u64,
    health: Health,
}

/// Delivery health by target name (`telegram`, `ntfy`, `redis`), shared by clones.
#[derive(Debug, Clone, Default)]
pub struct DeliveryHealth {
    targets: Arc<Mutex<BTreeMap<String, Target>>>,
}

/// One message's place in its target's history, handed back with each outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

impl DeliveryHealth {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Target>) -> T) -> T {
        f(&mut self.targets.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Says `name` is configured (so it is listed before it has sent anything).
    pub fn register(&self, name: &str) {
        self.with(|targets| {
            targets.entry(name.to_string()).or_insert(Target {
                latest: 0,
                health: Health::NothingDue,
            });
        });
    }

    /// A new message for `name` is about to be sent; its outcomes go with the ticket.
    pub fn begin(&self, name: &str) -> Ticket {
        self.with(|targets| {
            let target = targets.entry(name.to_string()).or_insert(Target {
                latest: 0,
                health: Health::NothingDue,
            });
            target.latest += 1;
            let last_error = target.health.error().map(str::to_string);
            target.health = Health::Sending { last_error };
            Ticket(target.latest)
        })
    }

    /// A try for the message of `ticket` failed (retries may follow).
    pub fn failed(&self, name: &str, ticket: Ticket, error: &str) {
        self.record(name, ticket, Health::Failing(error.to_string()));
    }

    /// The message of `ticket` arrived.
    pub fn delivered(&self, name: &str, ticket: Ticket) {
        self.record(name, ticket, Health::Delivered);
    }

    fn record(&self, name: &str, ticket: Ticket, health: Health) {
        self.with(|targets| {
            if let Some(target) = targets.get_mut(name).filter(|t| t.latest == ticket.0) {
                target.health = health;
            }
        });
    }

    /// Every known target and its health, by name.
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(String, Health)> {
        self.with(|targets| {
            targets
                .iter()
                .map(|(name, t)| (name.clone(), t.health.clone()))
                .collect()
        })
    }

    /// The health of one target (`NothingDue` when it never sent anything).
    pub fn of(&self, name: &str) -> Health {
        self.with(|targets| {
            targets
                .get(name)
                .map_or(Health::NothingDue, |t| t.health.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_message_decides() {
        let health = DeliveryHealth::default();
        assert_eq!(health.of("ntfy"), Health::NothingDue);
        let first = health.begin("ntfy");
        health.failed("ntfy", first, "HTTP 503");
        assert_eq!(health.of("ntfy"), Health::Failing("HTTP 503".into()));
        // A retry that succeeds clears it.
        health.delivered("ntfy", first);
        assert_eq!(health.of("ntfy"), Health::Delivered);
        // A newer message fails; the older one's late outcome changes nothing.
        let second = health.begin("ntfy");
        let third = health.begin("ntfy");
        health.failed("ntfy", third, "HTTP 401");
        health.delivered("ntfy", second);
        assert_eq!(health.of("ntfy"), Health::Failing("HTTP 401".into()));
        // While the next one is on its way, the last failure still shows.
        let fourth = health.begin("ntfy");
        assert_eq!(health.of("ntfy").error(), Some("HTTP 401"));
        health.delivered("ntfy", fourth);
        assert_eq!(health.of("ntfy").error(), None);
    }

    #[test]
    fn registered_targets_are_listed_before_they_send() {
        let health = DeliveryHealth::default();
        health.register("redis");
        let ticket = health.begin("redis");
        health.delivered("redis", ticket);
        health.register("redis");
        assert_eq!(
            health.snapshot(),
            vec![("redis".to_string(), Health::Delivered)]
        );
    }
}
