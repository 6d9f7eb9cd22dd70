//! Test-only: a real session (real store in a temp dir, fixed clock) to call handlers and routes
//! without sockets.

use crate::clock::{self, Now};
use crate::config::{Config, Flags};
use crate::session::events::EventBus;
use crate::session::settings::Settings;
use crate::session::Session;
use crate::store::Store;
use crate::token::TokenRecord;
use std::collections::HashMap;
use std::sync::Arc;

/// The access token of [`valid_token`].
pub const ACCESS_TOKEN: &str = "accesstoken0123456789abcdefghijk";
/// The api key of a configured fixture.
pub const API_KEY: &str = "kitedtestkey0001";

pub struct Fixture {
    pub session: Session,
    _dir: tempfile::TempDir,
}

/// A session at `now` (naive IST, `2026-11-23 10:00:00`), configured or not, with `token` stored.
/// Kite is a closed port: anything that reached it would fail loudly.
pub fn session(configured: bool, token: Option<TokenRecord>, now: &str) -> Fixture {
    session_with(configured, token, now, &[])
}

/// [`session`] with more environment variables (`KITED_PUBLIC_URL`, ...).
pub fn session_with(
    configured: bool,
    token: Option<TokenRecord>,
    now: &str,
    extra: &[(&str, &str)],
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut vars = HashMap::from([("HOME".to_string(), dir.path().display().to_string())]);
    if configured {
        vars.insert("KITE_API_KEY".into(), API_KEY.into());
        vars.insert("KITE_API_SECRET".into(), "s3cret".into());
        vars.insert("KITE_API_ROOT".into(), "http://127.0.0.1:9".into());
    }
    for (key, value) in extra {
        vars.insert(key.to_string(), value.to_string());
    }
    let flags = Flags {
        profile: "test".into(),
        state_dir: Some(dir.path().join("state")),
        ..Flags::default()
    };
    let config = Config::load(&flags, &move |k| vars.get(k).cloned()).unwrap();
    let store = Store::open(&config.state_dir, "test").unwrap();
    if let Some(token) = token {
        store.save_token(&token).unwrap();
    }
    let fixed = clock::parse_login_time(now)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let now: Now = Arc::new(move || fixed);
    let settings = Settings::new(config, "127.0.0.1:8079".parse().unwrap());
    let session = Session::new(settings, store, EventBus::new(now.clone()), now).unwrap();
    Fixture { session, _dir: dir }
}

/// A token that expires at `expires_at` (RFC 3339).
pub fn token(expires_at: &str) -> TokenRecord {
    TokenRecord::sample(ACCESS_TOKEN, expires_at)
}
