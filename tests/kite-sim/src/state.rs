//! What the simulator remembers: the user, request tokens, sessions, refresh tokens, queued
//! faults and the call log, behind one lock shared by the server and the `Sim` handles.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::faults::Fault;
use crate::SimConfig;

/// One request the simulator received (control routes excluded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// The raw query string ("" when absent).
    pub query: String,
    /// The raw body, lossily decoded as UTF-8.
    pub body: String,
    pub x_kite_version: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The status answered; `None` while unanswered (or never, for [`Fault::Hang`]).
    pub status: Option<u16>,
}

impl Call {
    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        pair(&self.query, name)
    }

    /// A decoded form-body parameter.
    pub fn form_param(&self, name: &str) -> Option<String> {
        pair(&self.body, name)
    }
}

fn pair(encoded: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(encoded.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// What the server task and every `Sim` clone share.
pub(crate) struct Shared {
    pub(crate) addr: SocketAddr,
    pub(crate) state: Mutex<State>,
}

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking test thread must not wedge the server: the state stays usable.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) user_id: String,
    pub(crate) user_name: String,
}

pub(crate) struct RequestToken {
    pub(crate) user: User,
    pub(crate) issued: Instant,
    pub(crate) used: bool,
}

pub(crate) struct Session {
    pub(crate) user: User,
}

pub(crate) struct State {
    pub(crate) api_key: String,
    pub(crate) api_secret: String,
    pub(crate) user: User,
    pub(crate) redirect_url: Option<String>,
    pub(crate) cancel: bool,
    pub(crate) ttl: Duration,
    pub(crate) login_time: Option<String>,
    pub(crate) issue_refresh_tokens: bool,
    /// The access token the next session gets instead of a random one.
    pub(crate) next_access_token: Option<String>,
    pub(crate) log_calls: bool,
    pub(crate) request_tokens: HashMap<String, RequestToken>,
    /// Live access tokens only: killing one removes it.
    pub(crate) access_tokens: HashMap<String, Session>,
    /// When each session was minted, just before its answer left: the "exchange's answer" that
    /// latency benchmarks measure from.
    pub(crate) minted_at: HashMap<String, SystemTime>,
    pub(crate) refresh_tokens: HashMap<String, User>,
    pub(crate) faults: VecDeque<Fault>,
    pub(crate) calls: Vec<Call>,
    /// Seconds added to the machine's clock in every `Date` header.
    pub(crate) date_offset_secs: i64,
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn now_ist() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

impl State {
    pub(crate) fn new(config: SimConfig) -> State {
        State {
            api_key: config.api_key,
            api_secret: config.api_secret,
            user: User {
                user_id: config.user_id,
                user_name: config.user_name,
            },
            redirect_url: config.redirect_url,
            cancel: false,
            ttl: config.request_token_ttl,
            login_time: None,
            issue_refresh_tokens: false,
            next_access_token: None,
            log_calls: config.log_calls,
            minted_at: HashMap::new(),
            request_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            faults: VecDeque::new(),
            calls: Vec::new(),
            date_offset_secs: config.date_offset_secs,
        }
    }

    pub(crate) fn issue_request_token(&mut self) -> String {
        let token = random_token(32);
        self.request_tokens.insert(
            token.clone(),
            RequestToken {
                user: self.user.clone(),
                issued: Instant::now(),
                used: false,
            },
        );
        token
    }

    /// Mints an access token for `user`; the JSON `data` of a session answer.
    pub(crate) fn new_session(&mut self, user: &User, refresh_token: Option<String>) -> Value {
        let access_token = self
            .next_access_token
            .take()
            .unwrap_or_else(|| random_token(32));
        self.access_tokens
            .insert(access_token.clone(), Session { user: user.clone() });
        self.minted_at
            .insert(access_token.clone(), SystemTime::now());
        let refresh_token = match refresh_token {
            Some(t) => t,
            None if self.issue_refresh_tokens => {
                let t = random_token(32);
                self.refresh_tokens.insert(t.clone(), user.clone());
                t
            }
            None => String::new(),
        };
        let login_time = self.login_time.clone().unwrap_or_else(now_ist);
        let mut data = profile_data(user);
        let extra = json!({
            "api_key": self.api_key,
            "access_token": access_token,
            "public_token": random_token(32),
            "enctoken": random_token(64),
            "refresh_token": refresh_token,
            "silo": "",
            "login_time": login_time,
        });
        if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
            data.extend(extra);
        }
        data
    }
}

/// The `data` of `GET /user/profile` (mocks/profile.json) for `user`.
pub(crate) fn profile_data(user: &User) -> Value {
    let shortname = user
        .user_name
        .split_whitespace()
        .next()
        .unwrap_or(&user.user_name);
    json!({
        "user_id": user.user_id,
        "user_type": "individual",
        "email": format!("{}@example.com", user.user_id.to_ascii_lowercase()),
        "user_name": user.user_name,
        "user_shortname": shortname,
        "broker": "ZERODHA",
        "exchanges": ["BFO", "MCX", "NSE", "CDS", "BSE", "BCD", "MF", "NFO"],
        "products": ["CNC", "NRML", "MIS", "BO", "CO"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": null,
        "meta": {"demat_consent": "physical"},
    })
}
