//! Logging in: login URLs, the browser callback, a pasted URL, the exchange with Kite, and
//! storing what Kite answered before anyone is told.

use crate::clock;
use crate::kite::{KiteError, SessionData};
use crate::session::callback::{check_request_token, CallbackParams};
use crate::session::error::SessionError;
use crate::session::login_state::Asker;
use crate::session::{kite_in, Session};
use crate::token::TokenRecord;
use kite_proto::EventKind;
use std::sync::Arc;

impl Session {
    /// A login URL carrying a fresh single-use `state`, and the callback URL to register.
    pub fn login_url(&self) -> Result<(String, String), SessionError> {
        self.login_url_for(Asker::Trusted)
    }

    /// [`Session::login_url`] for `asker`, whose states are kept apart from the others'.
    pub fn login_url_for(&self, asker: Asker<'_>) -> Result<(String, String), SessionError> {
        let settings = self.settings();
        let kite = kite_in(&settings)?;
        let state = self.inner.login_states.issue(asker)?;
        let mut url = url::Url::parse(&settings.config.login_url)
            .map_err(|e| SessionError::BadRequest(format!("kite.login_url is not a URL: {e}")))?;
        let redirect_params = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("state", &state)
            .finish();
        url.query_pairs_mut()
            .append_pair("v", "3")
            .append_pair("api_key", kite.api_key())
            .append_pair("redirect_params", &redirect_params);
        Ok((url.to_string(), settings.callback_url.clone()))
    }

    /// Kite's browser redirect: checks `status` and the `state` before anything reaches Kite.
    pub async fn complete_callback(&self, query: &str) -> Result<Arc<TokenRecord>, SessionError> {
        let params = CallbackParams::parse(query);
        match params.status.as_deref() {
            Some("success") => {}
            Some("cancelled") => return Err(SessionError::Cancelled),
            Some(other) => {
                return Err(SessionError::BadRequest(format!(
                    "Kite reported the login as {:?}",
                    other.chars().take(32).collect::<String>()
                )))
            }
            None => {
                return Err(SessionError::BadRequest(
                    "the callback has no status".into(),
                ))
            }
        }
        match params.state.as_deref() {
            Some(state) if self.inner.login_states.take(state) => {}
            _ => return Err(SessionError::BadState),
        }
        let token = params
            .request_token
            .ok_or_else(|| SessionError::BadRequest("the callback has no request_token".into()))?;
        self.exchange(&token).await
    }

    /// What a person pasted: a bare request token, or the whole redirected URL.
    pub async fn exchange_pasted(&self, text: &str) -> Result<Arc<TokenRecord>, SessionError> {
        if text.contains('=') {
            let params = CallbackParams::parse(text);
            if params.status.as_deref() == Some("cancelled") {
                return Err(SessionError::Cancelled);
            }
            // A pasted URL comes from the person at this machine (the socket checks the uid),
            // so its state is used up if it is ours but not required.
            if let Some(state) = &params.state {
                self.inner.login_states.take(state);
            }
            let token = params.request_token.ok_or_else(|| {
                SessionError::BadRequest("that URL has no request_token parameter".into())
            })?;
            self.exchange(&token).await
        } else {
            self.exchange(text.trim()).await
        }
    }

    /// Exchanges a request token, stores the session durably, then announces it.
    pub async fn exchange(&self, request_token: &str) -> Result<Arc<TokenRecord>, SessionError> {
        check_request_token(request_token).map_err(SessionError::BadRequest)?;
        let kite = self.kite()?;
        let _one_at_a_time = self.inner.exchange_lock.lock().await;
        // Kite's request token is single use: spend it only if the result can be stored.
        self.ensure_store_writable().await?;
        let data = crate::kite::answer::checked_session(kite.exchange(request_token).await?)?;
        let expected = self.expected_user();
        if let Some((expected, why)) = expected
            .clone()
            .filter(|(e, _)| !e.eq_ignore_ascii_case(&data.profile.user_id))
        {
            let got = data.profile.user_id;
            tracing::warn!(%got, %expected, "refused a login as another user ({why})");
            return Err(SessionError::WrongUser { expected, got, why });
        }
        let record = self.record_from(data, kite.api_key())?;
        if expected.is_none() {
            let user_id = &record.profile.user_id;
            self.pin_user(Some(user_id.clone())).await?;
            tracing::info!(
                user = %user_id,
                "pinned Zerodha user {}: a login as anyone else is refused until `kitectl logout` \
                 (or set kite.user_id)",
                user_id
            );
        }
        self.store_and_announce(record).await
    }

    pub(super) fn record_from(
        &self,
        data: SessionData,
        api_key: &str,
    ) -> Result<TokenRecord, SessionError> {
        let login_time = clock::parse_login_time(&data.login_time).ok_or_else(|| {
            KiteError::BadResponse(format!("login_time {:?} is not a time", data.login_time))
        })?;
        // Against the machine's real clock: Kite's login_time is real time even when the
        // session's clock is moved for tests (KITED_FAKE_NOW).
        crate::kite::answer::check_login_time(
            login_time.with_timezone(&chrono::Utc),
            chrono::Utc::now(),
        )?;
        let expires_at = clock::expires_at(login_time, self.config().expiry.cutoff);
        Ok(TokenRecord {
            access_token: data.access_token,
            api_key: api_key.to_string(),
            profile: data.profile,
            login_time: clock::stamp(login_time),
            expires_at: clock::stamp(expires_at),
            refresh_token: data.refresh_token.filter(|t| !t.is_empty()),
            invalidated: None,
        })
    }

    /// Flushes `record` to disk, then publishes it to waiters and the event bus.
    pub(super) async fn store_and_announce(
        &self,
        record: TokenRecord,
    ) -> Result<Arc<TokenRecord>, SessionError> {
        self.write(Some(record.clone())).await?;
        let record = Arc::new(record);
        self.inner.token.send_replace(Some(record.clone()));
        let expires_at = clock::rfc3339(record.expires_at);
        tracing::info!(
            user = %record.profile.user_id,
            token = %record.access_token.hint(),
            %expires_at,
            "stored a new token"
        );
        let (user_id, user_name) = record.profile.wire_names();
        self.inner.events.emit(EventKind::TokenNew {
            user_id,
            user_name,
            expires_at,
        });
        Ok(record)
    }
}
