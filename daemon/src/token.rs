//! The token record kited keeps, and the secret strings that must never reach a log.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A string that must not be printed: the api secret, an access or refresh token.
/// `Debug` and `Display` show only a short prefix, enough to tell two apart in a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the few places that must send it (Kite, `get_token`).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first four characters and an ellipsis: enough to correlate, never enough to use.
    pub fn hint(&self) -> String {
        let prefix: String = self.0.chars().take(4).collect();
        format!("{prefix}…")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.hint())
    }
}

/// The format version written with every record, so a later layout can migrate old ones.
pub const RECORD_VERSION: u32 = 1;

/// Everything kited knows about the current Kite session. Stored whole in sled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub access_token: Secret,
    pub api_key: String,
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub user_shortname: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub user_type: String,
    #[serde(default)]
    pub broker: String,
    #[serde(default)]
    pub exchanges: Vec<String>,
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub order_types: Vec<String>,
    /// RFC 3339 in IST, converted from Kite's naive `login_time`.
    pub login_time: String,
    /// RFC 3339 in IST: the first cutoff strictly after `login_time`.
    pub expires_at: String,
    /// Only exchange-approved platforms get one; ordinary apps get none.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Set when Kite refused the token or it was logged out: the reason.
    #[serde(default)]
    pub invalidated: Option<String>,
}

impl TokenRecord {
    /// The display name: the full name, else the short name, else the user id.
    pub fn display_name(&self) -> &str {
        [&self.user_name, &self.user_shortname, &self.user_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or("")
    }
}

#[cfg(test)]
impl TokenRecord {
    /// A record for AB1234 "Kite Tester" logged in on 2026-11-23 09:00 IST, for unit tests.
    pub fn sample(access_token: &str, expires_at: &str) -> TokenRecord {
        TokenRecord {
            access_token: Secret::new(access_token),
            api_key: "kitedtestkey0001".into(),
            user_id: "AB1234".into(),
            user_name: "Kite Tester".into(),
            user_shortname: "Kite".into(),
            email: String::new(),
            user_type: String::new(),
            broker: "ZERODHA".into(),
            exchanges: vec![],
            products: vec![],
            order_types: vec![],
            login_time: "2026-11-23T09:00:00+05:30".into(),
            expires_at: expires_at.into(),
            refresh_token: None,
            invalidated: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("abcdefghijklmnop");
        assert_eq!(format!("{secret:?}"), "Secret(abcd…)");
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            "\"abcdefghijklmnop\""
        );
    }
}
