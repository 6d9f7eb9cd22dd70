//! What happens to a stored token after the login: renewal at the cutoff, Kite's checks (the
//! periodic one and the readiness probe), invalidation and logout.

use crate::clock;
use crate::kite::KiteError;
use crate::session::error::SessionError;
use crate::session::Session;
use crate::token::TokenRecord;
use kite_proto::EventKind;
use std::sync::Arc;

impl Session {
    /// Renews with the refresh token, where Kite issued one. `Ok(None)`: nothing to renew with.
    pub async fn renew(&self) -> Result<Option<Arc<TokenRecord>>, SessionError> {
        let Some(current) = self.current() else {
            return Ok(None);
        };
        let Some(refresh_token) = current.refresh_token.clone() else {
            return Ok(None);
        };
        let kite = self.kite()?;
        let _one_at_a_time = self.inner.exchange_lock.lock().await;
        let data = kite.renew(&refresh_token).await?;
        crate::kite::answer::check_token("access_token", data.access_token.expose())?;
        if let Some(refresh) = data.refresh_token.as_ref().filter(|t| !t.is_empty()) {
            crate::kite::answer::check_token("refresh_token", refresh.expose())?;
        }
        let login_time = clock::ist(self.now());
        let mut record = (*current).clone();
        record.access_token = data.access_token;
        if let Some(new_refresh) = data.refresh_token.filter(|t| !t.is_empty()) {
            record.refresh_token = Some(new_refresh);
        }
        record.login_time = clock::stamp(login_time);
        record.expires_at =
            clock::stamp(clock::expires_at(login_time, self.config().expiry.cutoff));
        record.invalidated = None;
        self.store_and_announce(record).await.map(Some)
    }

    /// Marks the current token dead (Kite said so), durably, and tells everyone.
    pub async fn invalidate(&self, reason: &str) -> Result<(), SessionError> {
        let Some(current) = self.current() else {
            return Ok(());
        };
        if current.invalidated.is_some() {
            return Ok(());
        }
        let mut record = (*current).clone();
        record.invalidated = Some(reason.to_string());
        self.write(Some(record.clone())).await?;
        self.inner.token.send_replace(Some(Arc::new(record)));
        self.inner.events.emit(EventKind::TokenInvalidated {
            reason: reason.to_string(),
        });
        Ok(())
    }

    /// Asks Kite whether the token still works; a 403 TokenException invalidates it. Transient
    /// failures change nothing.
    pub async fn verify(&self) -> Result<(), SessionError> {
        let Some(current) = self.current() else {
            return Ok(());
        };
        if !self.state_of(&current).is_usable() {
            return Ok(());
        }
        let kite = self.kite()?;
        match kite.profile(&current.access_token).await {
            Ok(_) => Ok(()),
            Err(KiteError::Token(message)) => {
                // Only invalidate the token we checked, not one that arrived meanwhile.
                if self
                    .current()
                    .is_some_and(|now| now.access_token == current.access_token)
                {
                    self.invalidate(&format!("Kite refused it: {message}"))
                        .await?;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One profile call for the readiness checks, with the current token when it is usable
    /// (else none: Kite still answers, which shows it is up and tells its clock). A 403
    /// TokenException invalidates the token checked, as the periodic check does.
    pub async fn probe_kite(
        &self,
    ) -> Result<(Option<Arc<TokenRecord>>, crate::kite::Probe), SessionError> {
        let kite = self.kite()?;
        let checked = self.current().filter(|t| self.state_of(t).is_usable());
        let probe = kite.probe(checked.as_ref().map(|t| &t.access_token)).await;
        if let (Some(checked), Err(KiteError::Token(message))) = (&checked, &probe.outcome) {
            // Only invalidate the token we checked, not one that arrived meanwhile.
            if self
                .current()
                .is_some_and(|now| now.access_token == checked.access_token)
            {
                if let Err(e) = self
                    .invalidate(&format!("Kite refused it: {message}"))
                    .await
                {
                    tracing::error!("cannot record that Kite refused the token: {e}");
                }
            }
        }
        Ok((checked, probe))
    }

    /// Invalidates the token at Kite (best effort) and removes it here. Every login link dies
    /// with it: a link is a way back in, and logging out means no way back in.
    pub async fn logout(&self) -> Result<(), SessionError> {
        self.revoke_links().await?;
        let Some(current) = self.current() else {
            return self.pin_user(None).await;
        };
        if let Ok(kite) = self.kite() {
            if let Err(e) = kite.logout(&current.access_token).await {
                tracing::warn!(
                    "Kite did not confirm the logout ({e}); removing the token here anyway"
                );
            }
            if let Some(refresh) = &current.refresh_token {
                if let Err(e) = kite.invalidate_refresh_token(refresh).await {
                    tracing::warn!("Kite did not invalidate the refresh token ({e})");
                }
            }
        }
        self.write(None).await?;
        self.inner.token.send_replace(None);
        self.pin_user(None).await?;
        self.inner.events.emit(EventKind::TokenInvalidated {
            reason: "logged out".into(),
        });
        Ok(())
    }
}
