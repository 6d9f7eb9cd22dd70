//! The IPC messages: one JSON object per line each way.
//!
//! A request is `{"op": "...", ...args}`; every request type has its own answer type
//! ([`Call::Answer`]), sent inside one envelope: `{"ok": true, ...answer}` or
//! `{"ok": false, "error": {"kind", "message"}}`. Both ends use these types, so the daemon's
//! handlers and `kitectl` cannot drift apart.

use crate::error::WireError;
use crate::frame::line_of;
use crate::status::TokenStatus;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A request type and the answer it gets.
pub trait Call: Into<Request> {
    type Answer: Serialize + DeserializeOwned;
}

/// Declares the requests once: the `Request` enum (tagged by `op`, the variant's snake_case
/// name), the conversion of each request into it, and each request's answer type.
macro_rules! requests {
    ($( $(#[$doc:meta])* $name:ident -> $answer:ty; )*) => {
        /// A client's request. The wire form is internally tagged by `op`.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum Request {
            $( $(#[$doc])* $name($name), )*
        }

        $(
            impl From<$name> for Request {
                fn from(request: $name) -> Request {
                    Request::$name(request)
                }
            }

            impl Call for $name {
                type Answer = $answer;
            }
        )*
    };
}

requests! {
    /// Is kited there, and which version?
    Ping -> Pong;
    /// The token's state.
    Status -> StatusReport;
    /// A valid token, optionally waiting for one.
    GetToken -> IssuedToken;
    /// A login URL with a fresh `state`, and the callback URL.
    LoginUrl -> LoginUrls;
    /// A login link for a phone (needs `http.public_url`).
    LoginLink -> IssuedLink;
    /// One test message through every push channel, one try each.
    PushTest -> PushResults;
    /// The readiness checks, run now: token, Kite, egress IP, clock, sinks, push.
    Doctor -> DoctorReport;
    /// Make every login link issued so far invalid (a new signing key).
    RevokeLinks -> Ack;
    /// Trade a request token (or the whole callback URL) for an access token.
    Exchange -> StatusReport;
    /// Invalidate the token at Kite and remove it here.
    Logout -> Ack;
    /// Subscribe to events: [`Ack`], then one [`crate::Event`] per line.
    Watch -> Ack;
    /// Stop the daemon.
    Shutdown -> Ack;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetToken {
    /// Block up to this many seconds for a valid token instead of failing at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginUrl {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginLink {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTest {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doctor {}

/// `doctor`'s answer: `{"ok":true,"checks":[{"name":"token","ok":true,"detail":"..."}, …]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReport {
    pub checks: Vec<crate::event::Check>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeLinks {}

/// Exactly one of the two is expected; the daemon says so otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shutdown {}

/// `{"ok":true}` and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// `ping`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    pub version: String,
}

/// `status` and `exchange`: `{"ok":true,"status":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub status: TokenStatus,
}

/// `get_token`: the only answer that carries the access token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub api_key: String,
    pub expires_at: String,
}

/// Redacts the access token: debug output ends up in logs.
impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("api_key", &self.api_key)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `login_link`'s answer: `https://…/login?t=TICKET`, and when the ticket stops working.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedLink {
    pub link: String,
    pub expires_at: String,
}

/// Redacts the link: its ticket opens a login until the cutoff, and debug output ends up in logs.
impl fmt::Debug for IssuedLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedLink")
            .field("link", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `push_test`'s answer: `{"ok":true,"results":[{"channel":"telegram","ok":true}, …]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResults {
    pub results: Vec<PushResult>,
}

/// One push channel's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// `telegram` or `ntfy`.
    pub channel: String,
    pub ok: bool,
    /// Why it failed (never a token or a channel URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `login_url`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginUrls {
    pub login_url: String,
    pub callback_url: String,
}

impl Request {
    /// Parses one line. Every failure is a `bad_request` error a person can read; an unknown
    /// `op` is answered with the list of known ones.
    pub fn parse(line: &[u8]) -> Result<Request, WireError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| WireError::bad_request("request is not valid UTF-8"))?;
        if let Ok(Some(key)) = crate::json_keys::duplicate_key(text) {
            let key: String = key.chars().take(64).collect();
            return Err(WireError::bad_request(format!(
                "request has the key {key:?} more than once"
            )));
        }
        serde_json::from_str(text).map_err(|e| {
            let message = if e.is_data() {
                format!("bad request: {e}")
            } else {
                format!("request is not valid JSON: {e}")
            };
            WireError::bad_request(message)
        })
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        line_of(self)
    }
}

/// What the daemon answers to a request whose answer type is `T`.
pub type Answer<T> = Result<T, WireError>;

/// The envelope of a successful answer: `ok` beside the answer's own fields.
#[derive(Serialize)]
struct Success<'a, T> {
    ok: bool,
    #[serde(flatten)]
    answer: &'a T,
}

/// The envelope of a failure.
#[derive(Serialize)]
struct Failure<'a> {
    ok: bool,
    error: &'a WireError,
}

/// What every answer starts with.
#[derive(Deserialize)]
struct Head {
    ok: bool,
    #[serde(default)]
    error: Option<WireError>,
}

/// An answer as one line, newline included.
pub fn answer_line<T: Serialize>(answer: &Answer<T>) -> String {
    match answer {
        Ok(answer) => line_of(&Success { ok: true, answer }),
        Err(error) => line_of(&Failure { ok: false, error }),
    }
}

/// Reads an answer line (the client side). `Err` means the line is not an answer of type `T`
/// at all; a well-formed failure is `Ok(Err(..))`.
pub fn parse_answer<T: DeserializeOwned>(line: &[u8]) -> Result<Answer<T>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("invalid JSON ({e})"))?;
    let head = Head::deserialize(&value).map_err(|e| format!("not an answer ({e})"))?;
    match (head.ok, head.error) {
        (true, _) => T::deserialize(value)
            .map(Ok)
            .map_err(|e| format!("an answer of the wrong shape ({e})")),
        (false, Some(error)) => Ok(Err(error)),
        (false, None) => Err("a failure without an error".into()),
    }
}

#[cfg(test)]
mod tests;
