//! The token state machine every front end calls: status, get-token, login, exchange, logout.
//!
//! One implementation serves the socket, the HTTP API and the browser callback. A new token is
//! flushed to disk before anyone is told it exists.

mod after_login;
pub(crate) mod callback;
pub(crate) mod delivery;
pub(crate) mod error;
pub(crate) mod events;
#[cfg(test)]
pub(crate) mod fixture;
pub(crate) mod in_flight;
mod links;
mod login;
pub(crate) mod login_link;
pub(crate) mod login_state;
pub(crate) mod settings;
pub(crate) mod ticket;

use crate::clock::{self, Now};
use crate::config::Config;
use crate::kite::KiteClient;
use crate::session::delivery::DeliveryHealth;
pub use crate::session::error::SessionError;
use crate::session::events::EventBus;
use crate::session::in_flight::InFlight;
use crate::session::login_state::LoginStates;
use crate::session::settings::Settings;
use crate::session::ticket::TicketKey;
use crate::store::{Store, StoreError};
use crate::token::{Secret, TokenRecord};
use kite_proto::{SinkStatus, TokenState, TokenStatus};
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
    pub expires_at: chrono::DateTime<chrono::FixedOffset>,
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
    /// The deliveries running on their own tasks, for a stop to wait for or abandon by name.
    in_flight: InFlight,
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
                    store.set_pinned_user(Some(&record.profile.user_id))?;
                    Some(record.profile.user_id.clone())
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
                in_flight: InFlight::default(),
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

    /// The deliveries running on their own tasks: the notifier, push and the schedule start
    /// them here, and a stop settles them.
    pub fn in_flight(&self) -> &InFlight {
        &self.inner.in_flight
    }

    /// Push channels' delivery health: push records into it, `doctor` reads it.
    pub fn push_health(&self) -> &DeliveryHealth {
        &self.inner.push_health
    }

    /// Each running sink's health.
    pub fn sinks(&self) -> Vec<SinkStatus> {
        self.inner
            .sinks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        clock::state_at(
            self.now(),
            record.expires_at,
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
        let seconds_left = record.as_deref().map(|r| {
            if state.is_usable() {
                clock::seconds_left(self.now(), r.expires_at)
            } else {
                0
            }
        });
        let (user_id, user_name) = record.as_deref().map(|r| r.profile.wire_names()).unzip();
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
            user_id,
            user_name,
            login_time: record.as_ref().map(|r| clock::rfc3339(r.login_time)),
            expires_at: record.as_ref().map(|r| clock::rfc3339(r.expires_at)),
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
                    expires_at: record.expires_at,
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
