//! Errors as they travel: a kind and a message, and what each kind means to a shell (the exit
//! code) and to a browser (the HTTP status). One table for both, so the socket, `kitectl` and
//! the web API never disagree.

use serde::{Deserialize, Serialize};
use std::fmt;

/// `kitectl`'s exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other error: Kite refused, daemon misconfigured, bad answer, command failed to start.
    pub const FAILURE: u8 = 1;
    /// Usage error (clap's own code for bad arguments).
    pub const USAGE: u8 = 2;
    /// The daemon could not be reached: no socket, nobody listening, no answer in time.
    pub const UNREACHABLE: u8 = 3;
    /// No valid token: a person has to log in.
    pub const LOGIN_REQUIRED: u8 = 4;
}

/// The machine-readable class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No api key or api secret configured.
    NotConfigured,
    /// No valid token: someone must log in.
    LoginRequired,
    /// Kite refused the request; the message says why.
    Kite,
    /// Kite could not be reached or answered garbage (an outage, a 5xx, a 429).
    KiteUnavailable,
    /// Kite did not answer within `kite.timeout`.
    KiteTimeout,
    /// The login belongs to another Zerodha user than `kite.user_id`.
    WrongUser,
    /// The request itself is malformed.
    BadRequest,
    /// The token store cannot be written now (a full disk); nothing was spent, try again later.
    StoreUnavailable,
    /// The daemon failed internally (storage, I/O).
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests and documentation tables.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::NotConfigured,
        ErrorKind::LoginRequired,
        ErrorKind::Kite,
        ErrorKind::KiteUnavailable,
        ErrorKind::KiteTimeout,
        ErrorKind::WrongUser,
        ErrorKind::BadRequest,
        ErrorKind::StoreUnavailable,
        ErrorKind::Internal,
    ];

    /// The table: `kitectl`'s exit code and the HTTP status for each kind.
    const fn codes(self) -> (u8, u16) {
        match self {
            // Someone has to log in: scripts test for 4; a browser gets "unauthorized".
            ErrorKind::LoginRequired => (exit::LOGIN_REQUIRED, 401),
            // kited cannot do its job until configured: "service unavailable".
            ErrorKind::NotConfigured => (exit::FAILURE, 503),
            // Kite said no (a used request token, a bad checksum): the request was wrong.
            ErrorKind::Kite => (exit::FAILURE, 400),
            // The upstream failed: "bad gateway"...
            ErrorKind::KiteUnavailable => (exit::FAILURE, 502),
            // ...or did not answer in time: "gateway timeout".
            ErrorKind::KiteTimeout => (exit::FAILURE, 504),
            // A real login, but not one this kited may accept: "forbidden".
            ErrorKind::WrongUser => (exit::FAILURE, 403),
            ErrorKind::BadRequest => (exit::FAILURE, 400),
            // kited cannot keep a token right now (a full disk): "service unavailable".
            ErrorKind::StoreUnavailable => (exit::FAILURE, 503),
            ErrorKind::Internal => (exit::FAILURE, 500),
        }
    }

    /// The exit code `kitectl` ends with when kited answers with this kind.
    pub const fn exit_code(self) -> u8 {
        self.codes().0
    }

    /// The HTTP status the web API answers with for this kind.
    pub const fn http_status(self) -> u16 {
        self.codes().1
    }

    /// Whether trying again later may succeed (Kite was down or slow, not refusing).
    pub const fn is_transient(self) -> bool {
        matches!(self, ErrorKind::KiteUnavailable | ErrorKind::KiteTimeout)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let rows: Vec<(ErrorKind, u8, u16)> = ErrorKind::ALL
            .iter()
            .map(|k| (*k, k.exit_code(), k.http_status()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (ErrorKind::NotConfigured, 1, 503),
                (ErrorKind::LoginRequired, 4, 401),
                (ErrorKind::Kite, 1, 400),
                (ErrorKind::KiteUnavailable, 1, 502),
                (ErrorKind::KiteTimeout, 1, 504),
                (ErrorKind::WrongUser, 1, 403),
                (ErrorKind::BadRequest, 1, 400),
                (ErrorKind::StoreUnavailable, 1, 503),
                (ErrorKind::Internal, 1, 500),
            ]
        );
    }

    #[test]
    fn wire_names() {
        let names: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|k| {
                serde_json::to_value(k)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "not_configured",
                "login_required",
                "kite",
                "kite_unavailable",
                "kite_timeout",
                "wrong_user",
                "bad_request",
                "store_unavailable",
                "internal"
            ]
        );
        let e = WireError::new(ErrorKind::NotConfigured, "x");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"kind": "not_configured", "message": "x"})
        );
    }

    /// A new kind added to the enum but not to `ALL` fails to compile here: the match is
    /// exhaustive, and each arm checks the kind's position in `ALL`.
    #[test]
    fn all_lists_every_kind_once() {
        for (position, kind) in ErrorKind::ALL.iter().enumerate() {
            let expected = match kind {
                ErrorKind::NotConfigured => 0,
                ErrorKind::LoginRequired => 1,
                ErrorKind::Kite => 2,
                ErrorKind::KiteUnavailable => 3,
                ErrorKind::KiteTimeout => 4,
                ErrorKind::WrongUser => 5,
                ErrorKind::BadRequest => 6,
                ErrorKind::StoreUnavailable => 7,
                ErrorKind::Internal => 8,
            };
            assert_eq!(
                position, expected,
                "{kind:?} is out of place in ErrorKind::ALL"
            );
        }
    }
}
