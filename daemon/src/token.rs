//! The token record kited keeps, the Zerodha user it belongs to, and the secret strings that
//! must never reach a log.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer, Serialize};
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

/// The Zerodha user a session belongs to, as Kite's session answer names them. Stored inside
/// the token record with the same field names. Kite may send `null` for any field but
/// `user_id`, or leave it out: either reads as empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserProfile {
    pub user_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_shortname: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub email: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub user_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub broker: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub exchanges: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub products: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub order_types: Vec<String>,
}

impl UserProfile {
    /// The display name: the full name, else the short name, else the user id.
    pub fn display_name(&self) -> &str {
        [&self.user_name, &self.user_shortname, &self.user_id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The user as `status` and the `token_new` event name them: the id and the display name.
    pub fn wire_names(&self) -> (String, String) {
        (self.user_id.clone(), self.display_name().to_string())
    }

    /// `Name (ID)`, or the bare id when the user has no name apart from it.
    pub fn who(&self) -> String {
        match self.display_name() {
            name if name.is_empty() || name == self.user_id => self.user_id.clone(),
            name => format!("{name} ({})", self.user_id),
        }
    }
}

/// A field that may be `null`: read as its type's default, like a missing one.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Everything kited knows about the current Kite session. Stored whole in sled, as JSON whose
/// times are RFC 3339 text (`2026-11-24T06:00:00+05:30`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub access_token: Secret,
    pub api_key: String,
    #[serde(flatten)]
    pub profile: UserProfile,
    /// When Kite logged the user in: IST, whole seconds.
    pub login_time: DateTime<FixedOffset>,
    /// The first cutoff strictly after `login_time`: IST, whole seconds.
    pub expires_at: DateTime<FixedOffset>,
    /// Only exchange-approved platforms get one; ordinary apps get none.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// Set when Kite refused the token or it was logged out: the reason.
    #[serde(default)]
    pub invalidated: Option<String>,
}

#[cfg(test)]
impl TokenRecord {
    /// A record for AB1234 "Kite Tester" logged in on 2026-11-23 09:00 IST, expiring at
    /// `expires_at` (RFC 3339), for unit tests.
    pub fn sample(access_token: &str, expires_at: &str) -> TokenRecord {
        TokenRecord {
            access_token: Secret::new(access_token),
            api_key: "kitedtestkey0001".into(),
            profile: UserProfile {
                user_id: "AB1234".into(),
                user_name: "Kite Tester".into(),
                user_shortname: "Kite".into(),
                email: String::new(),
                user_type: String::new(),
                broker: "ZERODHA".into(),
                exchanges: vec![],
                products: vec![],
                order_types: vec![],
            },
            login_time: DateTime::parse_from_rfc3339("2026-11-23T09:00:00+05:30").unwrap(),
            expires_at: DateTime::parse_from_rfc3339(expires_at).unwrap(),
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

    #[test]
    fn missing_and_null_profile_fields_read_as_empty() {
        let profile: UserProfile = serde_json::from_str(
            r#"{"user_id":"AB1234","user_name":null,"email":null,"exchanges":null,"broker":"ZERODHA"}"#,
        )
        .unwrap();
        assert_eq!(profile.user_id, "AB1234");
        assert_eq!(profile.user_name, "");
        assert_eq!(profile.user_shortname, "");
        assert_eq!(profile.email, "");
        assert_eq!(profile.broker, "ZERODHA");
        assert!(profile.exchanges.is_empty() && profile.products.is_empty());
        assert_eq!(profile.display_name(), "AB1234");
        assert_eq!(profile.who(), "AB1234");
        for without_id in [r#"{"user_name":"A"}"#, r#"{"user_id":null}"#] {
            assert!(
                serde_json::from_str::<UserProfile>(without_id).is_err(),
                "{without_id}"
            );
        }
    }

    #[test]
    fn names() {
        let mut profile = TokenRecord::sample("t", "2026-11-24T06:00:00+05:30").profile;
        assert_eq!(profile.display_name(), "Kite Tester");
        assert_eq!(profile.who(), "Kite Tester (AB1234)");
        assert_eq!(
            profile.wire_names(),
            ("AB1234".to_string(), "Kite Tester".to_string())
        );
        profile.user_name.clear();
        assert_eq!(profile.display_name(), "Kite");
    }
}
