//! The token state machine every front end calls: status, get-token, login, exchange, logout.
//!
//! One implementation serves the socket, the HTTP API and the browser callback. A new token is
//! flushed to disk before anyone is told it exists.

pub(crate) mod callback;
pub(crate) mod delivery;
pub(crate) mod error;
pub(crate) mod events;
#[cfg(test)]
pub(crate) mod fixture;
pub(crate) mod login_link;
pub(crate) mod login_state;
pub(crate) mod settings;
pub(crate) mod ticket;

use crate::clock::{self, Now};
use crate::config::Config;
use crate::kite::{KiteClient, KiteError, SessionData};
use crate::session::callback::{check_request_token, CallbackParams};
use crate::session::delivery::DeliveryHealth;
pub use crate::session::error::SessionError;
use crate::session::events::EventBus;
use crate::session::login_state::{Asker, LoginStates};
use crate::session::settings::Settings;
use crate::session::ticket::TicketKey;
use crate::store::{Store, StoreError};
use crate::token::{Secret, TokenRecord};
use kite_proto::{EventKind, SinkStatus, TokenState, TokenStatus};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The longest `get_token` wait honoured (a day): keeps deadline arithmetic far from overflow.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What `get_token` hands out.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: Secret,
    pub api_key: String,
    pub expires_at: String,
}

#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    /// The settings in force; receivers wake on every reload (the schedule and notifier replan).
    settings: watch::Sender<Arc<Settings>>,
    store: Arc<Store>,
    /// The current token; receivers wake when it changes (`get_token --wait`).
    token: watch::Sender<Option<Arc<TokenRecord>>>,
    /// Login `state`s handed out and not yet used, with when they were made.
    login_states: LoginStates,
    /// One exchange at a time, so two logins racing cannot store out of order.
    exchange_lock: tokio::sync::Mutex<()>,
    events: EventBus,
    /// Why `hooks.env_file` could not be rewritten, until a rewrite works.
    env_file_error: Mutex<Option<String>>,
    /// Each running sink's health, as `status` reports it.
    sinks: Mutex<Vec<SinkStatus>>,
    now: Now,
    /// How the latest push to each channel went (the `push` readiness check).
    push_health: DeliveryHealth,
    /// The first Zerodha user kited saw, when `kite.user_id` is not set: every later login
    /// must be this user until `kitectl logout`.
    pinned_user: Mutex<Option<String>>,
    /// Signs and checks the login links sent to phones; replaced when links are revoked.
    ticket_key: Mutex<TicketKey>,
}

impl Session {
    /// Builds the session around an open store, loading the stored token.
    pub fn new(
        settings: Settings,
        store: Store,
        events: EventBus,
        now: Now,
    ) -> Result<Session, StoreError> {
        let stored = of_this_app(store.load_token()?, &settings.config).map(Arc::new);
        let ticket_key = TicketKey::new(store.ticket_key()?);
        // A token stored before pinning existed pins its own user.
        let pinned_user = match store.pinned_user()? {
            Some(user) => Some(user),
            None => match &stored {
                Some(record) => {
                    store.set_pinned_user(Some(&record.user_id))?;
                    Some(record.user_id.clone())
                }
                None => None,
            },
        };
        let (token, _) = watch::channel(stored);
        Ok(Session {
            inner: Arc::new(Inner {
                settings: watch::channel(Arc::new(settings)).0,
                store: Arc::new(store),
                token,
                login_states: LoginStates::default(),
                exchange_lock: tokio::sync::Mutex::new(()),
                events,
                env_file_error: Mutex::new(None),
                sinks: Mutex::new(Vec::new()),
                now,
                push_health: DeliveryHealth::default(),
                pinned_user: Mutex::new(pinned_user),
                ticket_key: Mutex::new(ticket_key),
            }),
        })
    }

    /// The settings in force now (one consistent snapshot).
    pub fn settings(&self) -> Arc<Settings> {
        self.inner.settings.borrow().clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.settings().config.clone()
    }

    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// Why `hooks.env_file` could not be rewritten, until a rewrite works.
    pub fn env_file_error(&self) -> Option<String> {
        self.inner
            .env_file_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the outcome of the latest env file rewrite.
    pub fn set_env_file_error(&self, error: Option<String>) {
        *self
            .inner
            .env_file_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// Push channels' delivery health: push records into it, `doctor` reads it.
    pub fn push_health(&self) -> &DeliveryHealth {
        &self.inner.push_health
    }

    /// The user every login must belong to, and where that comes from.
    fn expected_user(&self) -> Option<(String, &'static str)> {
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
    async fn pin_user(&self, user_id: Option<String>) -> Result<(), SessionError> {
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

    /// Each running sink's health.
    pub fn sinks(&self) -> Vec<SinkStatus> {
        self.inner
            .sinks
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

    /// Records sink `name`'s health: `Ok` once it holds the current state, else why not;
    /// `None` when the sink is no longer configured.
    pub fn set_sink(&self, name: &str, health: Option<Result<(), String>>) {
        let mut sinks = self.inner.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.retain(|s| s.name != name);
        if let Some(health) = health {
            sinks.push(SinkStatus {
                name: name.to_string(),
                ok: health.is_ok(),
                error: health.err(),
            });
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        (self.inner.now)()
    }

    pub fn callback_url(&self) -> String {
        self.settings().callback_url.clone()
    }

    /// Swaps in a reloaded configuration, with the Kite client and callback URL built from it,
    /// as one. The token and the listeners stay as they are.
    pub fn reload(&self, config: Config) {
        let key_changed = config.api_key != self.config().api_key;
        self.inner
            .settings
            .send_modify(|settings| *settings = Arc::new(settings.reloaded(config)));
        if key_changed {
            // Another Kite app: its own stored token (if the store holds one) or none.
            match self.inner.store.load_token() {
                Ok(stored) => {
                    let record = of_this_app(stored, &self.config()).map(Arc::new);
                    self.inner.token.send_replace(record);
                }
                Err(e) => tracing::error!("cannot reload the stored token: {e}"),
            }
        }
    }

    /// A receiver that changes on every reload.
    pub fn watch_settings(&self) -> watch::Receiver<Arc<Settings>> {
        self.inner.settings.subscribe()
    }

    /// The current token record, whatever its state.
    pub fn current(&self) -> Option<Arc<TokenRecord>> {
        self.inner.token.borrow().clone()
    }

    /// A receiver that changes whenever a token is stored, invalidated or removed.
    pub fn watch_token(&self) -> watch::Receiver<Option<Arc<TokenRecord>>> {
        self.inner.token.subscribe()
    }

    /// The state of `record` right now.
    pub fn state_of(&self, record: &TokenRecord) -> TokenState {
        let Some(expires_at) = clock::parse_rfc3339(&record.expires_at) else {
            return TokenState::Expired;
        };
        clock::state_at(
            self.now(),
            expires_at,
            record.invalidated.is_some(),
            self.config().expiring_window(),
        )
    }

    pub fn status(&self) -> TokenStatus {
        let config = self.config();
        let record = self.current();
        let state = record
            .as_deref()
            .map_or(TokenState::None, |r| self.state_of(r));
        let configured = config.is_configured();
        let seconds_left = record.as_deref().and_then(|r| {
            let expires_at = clock::parse_rfc3339(&r.expires_at)?;
            Some(if state.is_usable() {
                clock::seconds_left(self.now(), expires_at)
            } else {
                0
            })
        });
        let hint = match (configured, state) {
            (false, _) => "Run `kitectl setup` (or set KITE_API_KEY and KITE_API_SECRET, or kite.api_key and kite.api_secret_file), then restart kited; `kited check-config` shows what it sees.".to_string(),
            (true, TokenState::Valid) => {
                "Nothing to do: programs can run `kitectl get-token`.".into()
            }
            (true, TokenState::Expiring) => {
                "The token expires soon; log in again after the cutoff with `kitectl login --open`."
                    .into()
            }
            (true, _) => "Log in with `kitectl login --open` or the Log in button.".into(),
        };
        TokenStatus {
            configured,
            state,
            valid: state.is_usable(),
            needs_refresh: state != TokenState::Valid,
            user_id: record.as_ref().map(|r| r.user_id.clone()),
            user_name: record.as_ref().map(|r| r.display_name().to_string()),
            login_time: record.as_ref().map(|r| r.login_time.clone()),
            expires_at: record.as_ref().map(|r| r.expires_at.clone()),
            seconds_left,
            profile: config.profile.clone(),
            api_key: config
                .api_key
                .clone()
                .or_else(|| record.as_ref().map(|r| r.api_key.clone())),
            invalidated_reason: record.as_ref().and_then(|r| r.invalidated.clone()),
            store_error: self.inner.store.failing(),
            env_file_error: self.env_file_error(),
            pinned_user_id: self.expected_user().map(|(user, _)| user),
            sinks: self.sinks(),
            hint,
        }
    }

    /// A valid token now, or — with `wait` — as soon as one arrives within `wait`.
    pub async fn get_token(&self, wait: Option<Duration>) -> Result<IssuedToken, SessionError> {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w.min(MAX_WAIT));
        let mut receiver = self.watch_token();
        loop {
            let record = receiver.borrow_and_update().clone();
            let state = record
                .as_deref()
                .map_or(TokenState::None, |r| self.state_of(r));
            if let Some(record) = record.filter(|_| state.is_usable()) {
                return Ok(IssuedToken {
                    access_token: record.access_token.clone(),
                    api_key: record.api_key.clone(),
                    expires_at: record.expires_at.clone(),
                });
            }
            let not_ready = || {
                if !self.config().is_configured() {
                    SessionError::NotConfigured(self.config().config_path.display().to_string())
                } else {
                    SessionError::LoginRequired(format!("token is {state}"))
                }
            };
            let Some(deadline) = deadline else {
                return Err(not_ready());
            };
            match tokio::time::timeout_at(deadline, receiver.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(not_ready()),
            }
        }
    }

    fn kite(&self) -> Result<KiteClient, SessionError> {
        kite_in(&self.settings())
    }

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
            .filter(|(e, _)| !e.eq_ignore_ascii_case(&data.user_id))
        {
            tracing::warn!(got = %data.user_id, %expected, "refused a login as another user ({why})");
            return Err(SessionError::WrongUser {
                expected,
                got: data.user_id,
                why,
            });
        }
        let record = self.record_from(data, kite.api_key())?;
        if expected.is_none() {
            self.pin_user(Some(record.user_id.clone())).await?;
            tracing::info!(
                user = %record.user_id,
                "pinned Zerodha user {}: a login as anyone else is refused until `kitectl logout` \
                 (or set kite.user_id)",
                record.user_id
            );
        }
        self.store_and_announce(record).await
    }

    fn record_from(&self, data: SessionData, api_key: &str) -> Result<TokenRecord, SessionError> {
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
            user_name: data.user_name.unwrap_or_default(),
            user_shortname: data.user_shortname.unwrap_or_default(),
            email: data.email.unwrap_or_default(),
            user_type: data.user_type.unwrap_or_default(),
            broker: data.broker.unwrap_or_default(),
            exchanges: data.exchanges.unwrap_or_default(),
            products: data.products.unwrap_or_default(),
            order_types: data.order_types.unwrap_or_default(),
            login_time: clock::rfc3339(login_time),
            expires_at: clock::rfc3339(expires_at),
            refresh_token: data.refresh_token.filter(|t| !t.is_empty()),
            user_id: data.user_id,
            invalidated: None,
        })
    }

    /// Flushes `record` to disk, then publishes it to waiters and the event bus.
    async fn store_and_announce(
        &self,
        record: TokenRecord,
    ) -> Result<Arc<TokenRecord>, SessionError> {
        self.write(Some(record.clone())).await?;
        let record = Arc::new(record);
        self.inner.token.send_replace(Some(record.clone()));
        tracing::info!(
            user = %record.user_id,
            token = %record.access_token.hint(),
            expires_at = %record.expires_at,
            "stored a new token"
        );
        self.inner.events.emit(EventKind::TokenNew {
            user_id: record.user_id.clone(),
            user_name: record.display_name().to_string(),
            expires_at: record.expires_at.clone(),
        });
        Ok(record)
    }

    /// The token store, for the task that retries it while it fails.
    pub fn store(&self) -> Arc<Store> {
        self.inner.store.clone()
    }

    /// Proves the store takes a write (reopening it after a failure), on a blocking thread.
    pub async fn ensure_store_writable(&self) -> Result<(), SessionError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.ensure_writable())
            .await
            .expect("store probe does not panic")
            .map_err(SessionError::StoreUnavailable)
    }

    /// Writes (or with `None` removes) the record on a blocking thread: sled's flush is fsync.
    async fn write(&self, record: Option<TokenRecord>) -> Result<(), SessionError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || match record {
            Some(record) => store.save_token(&record),
            None => store.clear_token(),
        })
        .await
        .expect("store writer does not panic")?;
        Ok(())
    }

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
        record.login_time = clock::rfc3339(login_time);
        record.expires_at =
            clock::rfc3339(clock::expires_at(login_time, self.config().expiry.cutoff));
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

/// The Kite client of `settings`, or why there is none.
/// The stored record, if it belongs to the configured Kite app: a token stored under another
/// api key (a simulator demo, an earlier app) is no token at all for this one.
fn of_this_app(record: Option<TokenRecord>, config: &Config) -> Option<TokenRecord> {
    let record = record?;
    if config.api_key.as_deref() == Some(record.api_key.as_str()) {
        return Some(record);
    }
    tracing::info!(
        "ignoring the stored token of api key {}: kited is set up for {}",
        record.api_key,
        config.api_key.as_deref().unwrap_or("no api key")
    );
    None
}

fn kite_in(settings: &Settings) -> Result<KiteClient, SessionError> {
    settings.kite.clone().ok_or_else(|| {
        SessionError::NotConfigured(settings.config.config_path.display().to_string())
    })
}
