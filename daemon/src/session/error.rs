//! Why a session operation failed, in words for a person, and its kind on the wire (which also
//! picks the exit code and the HTTP status).

use crate::kite::KiteError;
use crate::store::StoreError;
use kite_proto::{ErrorKind, WireError};

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("kited has no Kite api key or api secret: run `kitectl setup`, or set KITE_API_KEY and KITE_API_SECRET (or kite.api_key and kite.api_secret_file in {0}), then restart kited")]
    NotConfigured(String),
    #[error("no valid Kite token ({0}): log in with `kitectl login --open`")]
    LoginRequired(String),
    #[error(transparent)]
    Kite(#[from] KiteError),
    #[error("this login belongs to Zerodha user {got}, but kited is set up for {expected} ({why}); the previous token is kept")]
    WrongUser {
        expected: String,
        got: String,
        /// Where the expected user comes from, and how to change it.
        why: &'static str,
    },
    #[error("the login was cancelled in the browser")]
    Cancelled,
    #[error(
        "this login link is stale or was not issued by this kited: start again with a fresh login"
    )]
    BadState,
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    TooManyLinkLogins(#[from] crate::session::login_state::TooManyLinkLogins),
    #[error("kited could not store the token: {0}")]
    Store(#[from] StoreError),
    #[error("kited cannot store a new token now, so it did not use the request token: {0}")]
    StoreUnavailable(StoreError),
}

impl SessionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::NotConfigured(_) => ErrorKind::NotConfigured,
            SessionError::LoginRequired(_) => ErrorKind::LoginRequired,
            SessionError::Kite(KiteError::Timeout(_)) => ErrorKind::KiteTimeout,
            SessionError::Kite(e) if e.is_transient() => ErrorKind::KiteUnavailable,
            SessionError::Kite(_) => ErrorKind::Kite,
            SessionError::WrongUser { .. } => ErrorKind::WrongUser,
            SessionError::Cancelled
            | SessionError::BadState
            | SessionError::BadRequest(_)
            | SessionError::TooManyLinkLogins(_) => ErrorKind::BadRequest,
            SessionError::StoreUnavailable(_) => ErrorKind::StoreUnavailable,
            SessionError::Store(_) => ErrorKind::Internal,
        }
    }

    pub fn to_wire(&self) -> WireError {
        WireError::new(self.kind(), self.to_string())
    }
}
