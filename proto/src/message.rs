//! The IPC messages: one JSON object per line each way.
//!
//! Requests are `{"op": "...", ...args}`; answers are `{"ok": true, ...}` or
//! `{"ok": false, "error": {"kind", "message"}}`. Both ends use these types, so the daemon's
//! handlers and `kitectl` cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// A client's request. The wire form is internally tagged by `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Status,
    GetToken {
        /// Block up to this many seconds for a valid token instead of failing at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_secs: Option<u64>,
    },
    LoginUrl,
    /// A login link for a phone (needs `http.public_url`).
    LoginLink,
    Exchange {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callback_url: Option<String>,
    },
    Logout,
    Watch,
    Shutdown,
}

/// Every `op` the daemon knows, for the error that names an unknown one.
pub const OPS: &[&str] = &[
    "ping",
    "status",
    "get_token",
    "login_url",
    "login_link",
    "exchange",
    "logout",
    "watch",
    "shutdown",
];

impl Request {
    /// Parses one line. Every failure is a `bad_request` error a person can read.
    pub fn parse(line: &[u8]) -> Result<Request, WireError> {
        let text = std::str::from_utf8(line)
            .map_err(|_| WireError::bad_request("request is not valid UTF-8"))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| WireError::bad_request(format!("request is not valid JSON: {e}")))?;
        let Value::Object(map) = &value else {
            return Err(WireError::bad_request("request must be a JSON object"));
        };
        let op = match map.get("op") {
            Some(Value::String(op)) => op.clone(),
            Some(_) => return Err(WireError::bad_request("\"op\" must be a string")),
            None => return Err(WireError::bad_request("request has no \"op\"")),
        };
        if !OPS.contains(&op.as_str()) {
            let op: String = op.chars().take(64).collect();
            return Err(WireError::bad_request(format!(
                "unknown op {op:?}; known ops: {}",
                OPS.join(", ")
            )));
        }
        serde_json::from_value(value)
            .map_err(|e| WireError::bad_request(format!("bad arguments for {op:?}: {e}")))
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a Request always serializes");
        line.push('\n');
        line
    }
}

/// Token lifecycle state, computed from the wall clock at every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// No token stored.
    None,
    /// Valid and not yet inside the earliest warning window.
    Valid,
    /// Still valid, but inside the earliest warning window before the cutoff.
    Expiring,
    /// Past its cutoff.
    Expired,
    /// Kite refused it (403 TokenException) or it was logged out.
    Invalidated,
}

impl TokenState {
    /// Whether a token in this state may be handed out.
    pub fn is_usable(self) -> bool {
        matches!(self, TokenState::Valid | TokenState::Expiring)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::None => "none",
            TokenState::Valid => "valid",
            TokenState::Expiring => "expiring",
            TokenState::Expired => "expired",
            TokenState::Invalidated => "invalidated",
        }
    }
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `status` reports. Never carries the access token or the api secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenStatus {
    /// False when no api key (or no api secret) is configured.
    pub configured: bool,
    pub state: TokenState,
    /// True when the token may be handed out (`valid` or `expiring`).
    pub valid: bool,
    /// True whenever `state` is not `valid`: time to log in.
    pub needs_refresh: bool,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    /// RFC 3339 with offset.
    pub login_time: Option<String>,
    /// RFC 3339 with offset.
    pub expires_at: Option<String>,
    /// Seconds until `expires_at`; 0 once past it, absent without a token.
    pub seconds_left: Option<i64>,
    pub profile: String,
    pub api_key: Option<String>,
    /// Why the token was invalidated, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidated_reason: Option<String>,
    /// Why the token store cannot be written right now (a full disk), while that lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// What the person should do next, in one sentence.
    pub hint: String,
}

/// The machine-readable class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No api key or api secret configured.
    NotConfigured,
    /// No valid token: someone must log in.
    LoginRequired,
    /// Kite refused the request; the message says why.
    Kite,
    /// Kite could not be reached or answered garbage (outage, timeout).
    KiteUnavailable,
    /// The login belongs to another Zerodha user than `kite.user_id`.
    WrongUser,
    /// The request itself is malformed.
    BadRequest,
    /// The daemon failed internally (storage, I/O).
    Internal,
}

/// `{"kind", "message"}` as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub kind: ErrorKind,
    pub message: String,
}

impl WireError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WireError {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// The daemon's answer to one request.
#[derive(Clone, PartialEq)]
pub enum Response {
    /// `ping`: `{"ok":true,"version":"..."}`.
    Pong { version: String },
    /// `status` and `exchange`: `{"ok":true,"status":{...}}`.
    Status { status: Box<TokenStatus> },
    /// `get_token`: the only answer that carries the access token.
    Token {
        access_token: String,
        api_key: String,
        expires_at: String,
    },
    /// `login_url`.
    LoginUrl {
        login_url: String,
        callback_url: String,
    },
    /// `login_link`: `{"ok":true,"link":"https://…/login?t=…","expires_at":"…"}`.
    LoginLink { link: String, expires_at: String },
    /// `{"ok":true}` alone: `logout`, `shutdown`, `watch` subscribed.
    Done,
    /// `{"ok":false,"error":{...}}`.
    Error(WireError),
}

impl fmt::Debug for Response {
    /// Redacts the access token: debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Token {
                api_key,
                expires_at,
                ..
            } => f
                .debug_struct("Token")
                .field("access_token", &"<redacted>")
                .field("api_key", api_key)
                .field("expires_at", expires_at)
                .finish(),
            Response::Pong { version } => f.debug_struct("Pong").field("version", version).finish(),
            Response::Status { status } => {
                f.debug_struct("Status").field("status", status).finish()
            }
            Response::LoginUrl {
                login_url,
                callback_url,
            } => f
                .debug_struct("LoginUrl")
                .field("login_url", login_url)
                .field("callback_url", callback_url)
                .finish(),
            Response::LoginLink { expires_at, .. } => f
                .debug_struct("LoginLink")
                .field("link", &"<redacted>")
                .field("expires_at", expires_at)
                .finish(),
            Response::Done => f.write_str("Done"),
            Response::Error(e) => f.debug_tuple("Error").field(e).finish(),
        }
    }
}

impl From<WireError> for Response {
    fn from(e: WireError) -> Self {
        Response::Error(e)
    }
}

impl Response {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Error(WireError::new(kind, message))
    }

    /// The JSON object for this answer.
    pub fn to_value(&self) -> Value {
        let mut map = Map::new();
        let ok = !matches!(self, Response::Error(_));
        map.insert("ok".into(), Value::Bool(ok));
        match self {
            Response::Pong { version } => {
                map.insert("version".into(), version.clone().into());
            }
            Response::Status { status } => {
                map.insert(
                    "status".into(),
                    serde_json::to_value(status).expect("status serializes"),
                );
            }
            Response::Token {
                access_token,
                api_key,
                expires_at,
            } => {
                map.insert("access_token".into(), access_token.clone().into());
                map.insert("api_key".into(), api_key.clone().into());
                map.insert("expires_at".into(), expires_at.clone().into());
            }
            Response::LoginUrl {
                login_url,
                callback_url,
            } => {
                map.insert("login_url".into(), login_url.clone().into());
                map.insert("callback_url".into(), callback_url.clone().into());
            }
            Response::LoginLink { link, expires_at } => {
                map.insert("link".into(), link.clone().into());
                map.insert("expires_at".into(), expires_at.clone().into());
            }
            Response::Done => {}
            Response::Error(e) => {
                map.insert(
                    "error".into(),
                    serde_json::to_value(e).expect("error serializes"),
                );
            }
        }
        Value::Object(map)
    }

    /// The answer as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = self.to_value().to_string();
        line.push('\n');
        line
    }

    /// Reads an answer line (the client side).
    pub fn parse(line: &[u8]) -> Result<Response, String> {
        let value: Value =
            serde_json::from_slice(line).map_err(|e| format!("daemon sent invalid JSON: {e}"))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Response, String> {
        let Value::Object(mut map) = value else {
            return Err("daemon sent a non-object answer".into());
        };
        let text = |map: &mut Map<String, Value>, key: &str| -> Result<String, String> {
            match map.remove(key) {
                Some(Value::String(s)) => Ok(s),
                _ => Err(format!("daemon answer lacks {key:?}")),
            }
        };
        match map.get("ok") {
            Some(Value::Bool(false)) => {
                let error = map.remove("error").ok_or("daemon error lacks \"error\"")?;
                let error: WireError =
                    serde_json::from_value(error).map_err(|e| format!("bad error object: {e}"))?;
                Ok(Response::Error(error))
            }
            Some(Value::Bool(true)) => {
                if map.contains_key("access_token") {
                    Ok(Response::Token {
                        access_token: text(&mut map, "access_token")?,
                        api_key: text(&mut map, "api_key")?,
                        expires_at: text(&mut map, "expires_at")?,
                    })
                } else if let Some(status) = map.remove("status") {
                    let status = serde_json::from_value(status)
                        .map_err(|e| format!("bad status object: {e}"))?;
                    Ok(Response::Status {
                        status: Box::new(status),
                    })
                } else if map.contains_key("login_url") {
                    Ok(Response::LoginUrl {
                        login_url: text(&mut map, "login_url")?,
                        callback_url: text(&mut map, "callback_url")?,
                    })
                } else if map.contains_key("link") {
                    Ok(Response::LoginLink {
                        link: text(&mut map, "link")?,
                        expires_at: text(&mut map, "expires_at")?,
                    })
                } else if map.contains_key("version") {
                    Ok(Response::Pong {
                        version: text(&mut map, "version")?,
                    })
                } else {
                    Ok(Response::Done)
                }
            }
            _ => Err("daemon answer lacks a boolean \"ok\"".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_op() {
        assert_eq!(Request::parse(br#"{"op":"ping"}"#), Ok(Request::Ping));
        assert_eq!(
            Request::parse(br#"{"op":"get_token","wait_secs":5}"#),
            Ok(Request::GetToken { wait_secs: Some(5) })
        );
        assert_eq!(
            Request::parse(br#"{"op":"exchange","request_token":"abc"}"#),
            Ok(Request::Exchange {
                request_token: Some("abc".into()),
                callback_url: None
            })
        );
        for op in OPS {
            let line = format!("{{\"op\":\"{op}\"}}");
            assert!(Request::parse(line.as_bytes()).is_ok(), "{op}");
        }
    }

    #[test]
    fn rejects_garbage_as_bad_request() {
        for line in [
            &b"not json"[..],
            b"[1,2]",
            b"{}",
            b"{\"op\":1}",
            b"{\"op\":\"fly\"}",
            b"{\"op\":\"get_token\",\"wait_secs\":\"soon\"}",
            b"{\"op\":\"get_token\",\"wait_secs\":-1}",
            b"\xff\xfe",
        ] {
            let err = Request::parse(line).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRequest, "{line:?}");
        }
    }

    #[test]
    fn requests_round_trip() {
        let req = Request::GetToken { wait_secs: Some(3) };
        let line = req.to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(Request::parse(line.trim_end().as_bytes()), Ok(req));
    }

    #[test]
    fn responses_round_trip() {
        let answers = [
            Response::Pong {
                version: "1".into(),
            },
            Response::Token {
                access_token: "a".into(),
                api_key: "k".into(),
                expires_at: "t".into(),
            },
            Response::LoginUrl {
                login_url: "l".into(),
                callback_url: "c".into(),
            },
            Response::LoginLink {
                link: "https://k.example/login?t=1-ab".into(),
                expires_at: "t".into(),
            },
            Response::Done,
            Response::error(ErrorKind::LoginRequired, "log in"),
        ];
        for answer in answers {
            let line = answer.to_line();
            assert_eq!(Response::parse(line.as_bytes()).unwrap(), answer);
        }
        assert_eq!(
            Response::error(ErrorKind::NotConfigured, "x").to_value(),
            serde_json::json!({"ok":false,"error":{"kind":"not_configured","message":"x"}})
        );
    }

    #[test]
    fn debug_redacts_the_token() {
        let answer = Response::Token {
            access_token: "SECRETTOKEN".into(),
            api_key: "k".into(),
            expires_at: "t".into(),
        };
        assert!(!format!("{answer:?}").contains("SECRETTOKEN"));
    }

    fn any_request() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::Ping),
            Just(Request::Status),
            Just(Request::LoginUrl),
            Just(Request::LoginLink),
            Just(Request::Logout),
            Just(Request::Watch),
            Just(Request::Shutdown),
            proptest::option::of(any::<u64>())
                .prop_map(|wait_secs| Request::GetToken { wait_secs }),
            (
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>())
            )
                .prop_map(|(request_token, callback_url)| Request::Exchange {
                    request_token,
                    callback_url
                }),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::parse(&bytes);
            let _ = Response::parse(&bytes);
        }

        #[test]
        fn invalid_utf8_is_always_refused(
            prefix in "[ -~]{0,40}",
            bad in proptest::sample::select(vec![0x80u8, 0xbf, 0xc0, 0xc1, 0xed, 0xf5, 0xff]),
            suffix in "[ -~]{0,40}",
        ) {
            // Valid JSON around one bad byte (inside a string, where a lossy decoder would
            // happily turn it into U+FFFD and accept the request).
            let clean = |s: &str| s.replace(['"', '\\'], "");
            let mut line = format!("{{\"op\":\"ping\",\"x\":\"{}", clean(&prefix)).into_bytes();
            line.push(bad);
            line.extend_from_slice(clean(&suffix).as_bytes());
            line.extend_from_slice(b"\"}");
            let err = Request::parse(&line).unwrap_err();
            prop_assert_eq!(err.kind, ErrorKind::BadRequest);
        }

        #[test]
        fn requests_round_trip_as_one_line(request in any_request()) {
            let line = request.to_line();
            let body = line.strip_suffix('\n').expect("a line ends with a newline");
            prop_assert!(!body.contains('\n'), "{:?}", line);
            prop_assert_eq!(Request::parse(body.as_bytes()), Ok(request));
        }

        #[test]
        fn parse_json_shaped_input(op in "[a-z_]{0,12}", extra in "[ -~]{0,40}") {
            let line = format!("{{\"op\":\"{op}\",\"x\":\"{}\"}}", extra.replace(['"', '\\'], ""));
            match Request::parse(line.as_bytes()) {
                Ok(_) => prop_assert!(OPS.contains(&op.as_str())),
                Err(e) => prop_assert_eq!(e.kind, ErrorKind::BadRequest),
            }
        }
    }
}
