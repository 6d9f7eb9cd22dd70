//! The token's status as `status` reports it.

use serde::{Deserialize, Serialize};
use std::fmt;

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
    /// Why `hooks.env_file` could not be rewritten, until a rewrite works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file_error: Option<String>,
    /// The Zerodha user every login must belong to: `kite.user_id`, or else the first user
    /// kited saw (pinned until `kitectl logout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_user_id: Option<String>,
    /// Each configured sink (`redis`) and whether its last write went through.
    #[serde(default)]
    pub sinks: Vec<SinkStatus>,
    /// What the person should do next, in one sentence.
    pub hint: String,
}

/// One sink's health: `ok` once the sink holds the current state, else why not (yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
