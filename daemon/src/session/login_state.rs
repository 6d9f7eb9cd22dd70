//! Login `state`s: each login URL carries a fresh, unguessable one, and the browser callback
//! is accepted only with a state handed out here, once, within its lifetime.
//!
//! States asked for over HTTP (any local process, or a web page, can ask) are kept apart from
//! those kited's own user asked for over the socket (`kitectl login`) and those kited made for
//! its reminders: a flood of HTTP requests drops only older HTTP states, never the login a
//! person started with kitectl.
//!
//! A login link (`/login?t=TICKET`) may leak (a forwarded message, a shared screen), so each
//! ticket holds at most one outstanding state (a new login through the link replaces the
//! link's previous one) and may start at most [`LINK_LOGINS_PER_MINUTE`] logins a minute:
//! whoever holds a link can never push out a login started any other way, or through another
//! link.

use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a login URL's `state` stays acceptable: Kite's request tokens live a few minutes,
/// and a person may take a while to type a password and TOTP.
pub const LOGIN_STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// Outstanding login states kept at most; older ones are dropped first.
const MAX_LOGIN_STATES: usize = 32;
/// Logins one link may start in a minute: a person retrying a failed login a few times stays
/// well under it; a script flooding a leaked link is stopped at it.
pub const LINK_LOGINS_PER_MINUTE: usize = 10;
/// The window of [`LINK_LOGINS_PER_MINUTE`].
const LINK_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Links with a login in flight, remembered at most (one a day is the usual count; the oldest
/// is forgotten first, and only its own state goes with it).
const MAX_LINKS: usize = 32;

/// Who asked for a login URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker<'a> {
    /// kited's own user over the socket, or kited itself (reminders, notifications).
    Trusted,
    /// Anyone over HTTP.
    Web,
    /// Whoever holds the login link with this (checked) ticket.
    Link(&'a str),
}

/// A link tried to start more than [`LINK_LOGINS_PER_MINUTE`] logins in a minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this login link started {LINK_LOGINS_PER_MINUTE} logins in the last minute; wait a minute"
)]
pub struct TooManyLinkLogins;

/// The states handed out and not yet used, with when each was made, one pool per [`Asker`].
#[derive(Default)]
pub struct LoginStates {
    trusted: Pool,
    web: Pool,
    links: Mutex<HashMap<String, LinkLogins>>,
}

/// One link's outstanding state and the moments it started logins in the last minute.
#[derive(Default)]
struct LinkLogins {
    state: Option<(String, Instant)>,
    started: VecDeque<Instant>,
}

#[derive(Default)]
struct Pool {
    issued: Mutex<HashMap<String, Instant>>,
}

impl LoginStates {
    /// A fresh state, remembered until it is used or expires.
    pub fn issue(&self, asker: Asker<'_>) -> Result<String, TooManyLinkLogins> {
        match asker {
            Asker::Trusted => Ok(self.trusted.issue()),
            Asker::Web => Ok(self.web.issue()),
            Asker::Link(ticket) => self.issue_for_link(ticket),
        }
    }

    /// Uses up `state`: true once for each one handed out within its lifetime.
    pub fn take(&self, state: &str) -> bool {
        self.trusted.take(state) || self.web.take(state) || self.take_link_state(state)
    }

    /// Drops every link's state and rate (their links were revoked).
    pub fn forget_links(&self) {
        self.links().clear();
    }

    fn issue_for_link(&self, ticket: &str) -> Result<String, TooManyLinkLogins> {
        let mut links = self.links();
        let now = Instant::now();
        links.retain(|_, link| {
            link.forget_before(now);
            link.state.is_some() || !link.started.is_empty()
        });
        if !links.contains_key(ticket) && links.len() >= MAX_LINKS {
            let oldest = links
                .iter()
                .min_by_key(|(_, link)| link.started.back().copied())
                .map(|(ticket, _)| ticket.clone());
            if let Some(oldest) = oldest {
                links.remove(&oldest);
            }
        }
        let link = links.entry(ticket.to_string()).or_default();
        if link.started.len() >= LINK_LOGINS_PER_MINUTE {
            return Err(TooManyLinkLogins);
        }
        let state = hex_token();
        link.started.push_back(now);
        link.state = Some((state.clone(), now));
        Ok(state)
    }

    fn take_link_state(&self, state: &str) -> bool {
        let mut links = self.links();
        for link in links.values_mut() {
            if let Some((_, made)) = link.state.as_ref().filter(|(s, _)| s == state) {
                let fresh = made.elapsed() < LOGIN_STATE_TTL;
                link.state = None;
                return fresh;
            }
        }
        false
    }

    /// Held only for map updates that cannot panic, like [`Pool::states`].
    fn links(&self) -> MutexGuard<'_, HashMap<String, LinkLogins>> {
        self.links
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LinkLogins {
    /// Drops starts older than the rate window and a state past its lifetime.
    fn forget_before(&mut self, now: Instant) {
        while self
            .started
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= LINK_RATE_WINDOW)
        {
            self.started.pop_front();
        }
        if self
            .state
            .as_ref()
            .is_some_and(|(_, made)| now.saturating_duration_since(*made) >= LOGIN_STATE_TTL)
        {
            self.state = None;
        }
    }
}

impl Pool {
    fn issue(&self) -> String {
        let state = hex_token();
        let mut states = self.states();
        states.retain(|_, made| made.elapsed() < LOGIN_STATE_TTL);
        while states.len() >= MAX_LOGIN_STATES {
            let Some(oldest) = states
                .iter()
                .min_by_key(|(_, made)| **made)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            states.remove(&oldest);
        }
        states.insert(state.clone(), Instant::now());
        state
    }

    fn take(&self, state: &str) -> bool {
        matches!(self.states().remove(state), Some(made) if made.elapsed() < LOGIN_STATE_TTL)
    }

    /// The lock is held only for map updates that cannot panic, so a poisoned lock still holds
    /// a consistent map.
    fn states(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.issued
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// 128 random bits as hex: an unguessable login `state`.
fn hex_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_unguessable_hex() {
        let (a, b) = (hex_token(), hex_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn a_state_is_taken_once_and_only_if_issued() {
        let states = LoginStates::default();
        let state = states.issue(Asker::Trusted).unwrap();
        assert!(!states.take("0123456789abcdef0123456789abcdef"));
        assert!(states.take(&state));
        assert!(!states.take(&state), "single use");
    }

    #[test]
    fn the_oldest_states_make_room() {
        let states = LoginStates::default();
        let first = states.issue(Asker::Web).unwrap();
        let mine = states.issue(Asker::Trusted).unwrap();
        let rest: Vec<String> = (0..MAX_LOGIN_STATES)
            .map(|_| states.issue(Asker::Web).unwrap())
            .collect();
        assert!(!states.take(&first), "dropped to make room");
        assert!(rest.iter().all(|s| states.take(s)));
        assert!(
            states.take(&mine),
            "web states never push out a trusted one"
        );
    }

    #[test]
    fn a_link_holds_one_state_and_a_rate() {
        let states = LoginStates::default();
        let mine = states.issue(Asker::Trusted).unwrap();
        let web = states.issue(Asker::Web).unwrap();
        let other_link = states.issue(Asker::Link("other")).unwrap();
        let first = states.issue(Asker::Link("leaked")).unwrap();
        let second = states.issue(Asker::Link("leaked")).unwrap();
        assert!(!states.take(&first), "replaced by the link's next login");
        for _ in 2..LINK_LOGINS_PER_MINUTE {
            states.issue(Asker::Link("leaked")).unwrap();
        }
        assert_eq!(states.issue(Asker::Link("leaked")), Err(TooManyLinkLogins));
        assert!(!states.take(&second));
        assert!(states.take(&mine) && states.take(&web) && states.take(&other_link));
        // More links than are remembered: each forgets only its own.
        let latest = states.issue(Asker::Link("latest")).unwrap();
        let flood: Vec<String> = (0..2 * MAX_LINKS)
            .map(|n| states.issue(Asker::Link(&format!("link {n}"))).unwrap())
            .collect();
        assert!(states.take(flood.last().unwrap()));
        assert!(!states.take(&latest), "the oldest link is forgotten");
        assert!(!states.take(&other_link), "single use");
    }
}
