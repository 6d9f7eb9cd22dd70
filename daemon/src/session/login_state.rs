//! Login `state`s: each login URL carries a fresh, unguessable one, and the browser callback
//! is accepted only with a state handed out here, once, within its lifetime.
//!
//! States asked for over HTTP (any local process, or a web page, can ask) are kept apart from
//! those kited's own user asked for over the socket (`kitectl login`) and those kited made for
//! its reminders: a flood of HTTP requests drops only older HTTP states, never the login a
//! person started with kitectl.

use rand::Rng;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a login URL's `state` stays acceptable: Kite's request tokens live a few minutes,
/// and a person may take a while to type a password and TOTP.
pub const LOGIN_STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// Outstanding login states kept at most; older ones are dropped first.
const MAX_LOGIN_STATES: usize = 32;

/// Who asked for a login URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asker {
    /// kited's own user over the socket, or kited itself (reminders, notifications).
    Trusted,
    /// Anyone over HTTP.
    Web,
}

/// The states handed out and not yet used, with when each was made, one pool per [`Asker`].
#[derive(Default)]
pub struct LoginStates {
    trusted: Pool,
    web: Pool,
}

#[derive(Default)]
struct Pool {
    issued: Mutex<HashMap<String, Instant>>,
}

impl LoginStates {
    /// A fresh state, remembered until it is used or expires.
    pub fn issue(&self, asker: Asker) -> String {
        match asker {
            Asker::Trusted => self.trusted.issue(),
            Asker::Web => self.web.issue(),
        }
    }

    /// Uses up `state`: true once for each one handed out within its lifetime.
    pub fn take(&self, state: &str) -> bool {
        self.trusted.take(state) || self.web.take(state)
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
        let state = states.issue(Asker::Trusted);
        assert!(!states.take("0123456789abcdef0123456789abcdef"));
        assert!(states.take(&state));
        assert!(!states.take(&state), "single use");
    }

    #[test]
    fn the_oldest_states_make_room() {
        let states = LoginStates::default();
        let first = states.issue(Asker::Web);
        let mine = states.issue(Asker::Trusted);
        let rest: Vec<String> = (0..MAX_LOGIN_STATES)
            .map(|_| states.issue(Asker::Web))
            .collect();
        assert!(!states.take(&first), "dropped to make room");
        assert!(rest.iter().all(|s| states.take(s)));
        assert!(
            states.take(&mine),
            "web states never push out a trusted one"
        );
    }
}
