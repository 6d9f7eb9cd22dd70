//! Who may log in, and through which links: the Zerodha user every login must belong to (set,
//! or pinned as the first one kited saw), and the key that signs the login links sent to phones.

use crate::session::error::SessionError;
use crate::session::ticket::TicketKey;
use crate::session::Session;

impl Session {
    /// The user every login must belong to, and where that comes from.
    pub(super) fn expected_user(&self) -> Option<(String, &'static str)> {
        if let Some(user) = self.config().expected_user_id.clone() {
            return Some((user, "kite.user_id"));
        }
        let pinned = self
            .inner
            .pinned_user
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        pinned.map(|user| {
            (
                user,
                "pinned as the first user kited saw; `kitectl logout` unpins it",
            )
        })
    }

    /// Pins (or with `None` unpins) the Zerodha user, on disk first.
    pub(super) async fn pin_user(&self, user_id: Option<String>) -> Result<(), SessionError> {
        let store = self.inner.store.clone();
        let user = user_id.clone();
        tokio::task::spawn_blocking(move || store.set_pinned_user(user.as_deref()))
            .await
            .expect("the pin writer does not panic")?;
        *self
            .inner
            .pinned_user
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = user_id;
        Ok(())
    }

    /// The key in force now.
    pub fn ticket_key(&self) -> TicketKey {
        self.inner
            .ticket_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Kills every login link issued so far: a new ticket key, on disk first (so a restart
    /// cannot bring the old links back), and the logins links started are forgotten.
    pub async fn revoke_links(&self) -> Result<(), SessionError> {
        let store = self.inner.store.clone();
        let key = tokio::task::spawn_blocking(move || store.rotate_ticket_key())
            .await
            .expect("the ticket key rotation does not panic")?;
        *self
            .inner
            .ticket_key
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = TicketKey::new(key);
        self.inner.login_states.forget_links();
        tracing::info!("revoked every login link issued so far");
        Ok(())
    }
}
