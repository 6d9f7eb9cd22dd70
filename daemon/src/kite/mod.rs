//! The only module that talks to Kite Connect: exchange, profile check, renew and logout.

pub(crate) mod answer;
pub(crate) mod display_text;
pub(crate) mod http_client;

use crate::token::{Secret, UserProfile};
use kite_proto::checksum::{refresh_checksum, session_checksum};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Kite's API version header value.
const KITE_VERSION: &str = "3";
/// The largest Kite answer we read; real ones are a few KiB.
const MAX_BODY: usize = 1 << 20;

/// Why a Kite call failed. Messages never carry the secret or a token.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum KiteError {
    /// 403 TokenException: the token (request or access) is dead or the checksum is wrong.
    #[error("Kite refused the token: {0}")]
    Token(String),
    /// 400 InputException.
    #[error("Kite rejected the request: {0}")]
    Input(String),
    /// Another error envelope Kite sent (PermissionException and the like).
    #[error("Kite answered {status} {error_type}: {message}")]
    Refused {
        status: u16,
        error_type: String,
        message: String,
    },
    /// 429, 5xx: Kite is overloaded or down; worth trying again later.
    #[error("Kite is unavailable (HTTP {status}): {message}")]
    Unavailable { status: u16, message: String },
    #[error("Kite did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Kite: {0}")]
    Unreachable(String),
    /// A 2xx answer we could not understand.
    #[error("Kite sent an answer kited cannot read: {0}")]
    BadResponse(String),
    /// A readable answer kited refuses to store (a malformed token, an impossible time).
    #[error("kited refused Kite's answer: {0}")]
    Unacceptable(String),
}

impl KiteError {
    /// Transient failures say nothing about the token's validity.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KiteError::Unavailable { .. }
                | KiteError::Timeout(_)
                | KiteError::Unreachable(_)
                | KiteError::BadResponse(_)
        )
    }
}

/// The parts of `POST /session/token`'s answer kited keeps. Only the access token, the user id
/// and the login time are essential.
#[derive(Debug, Clone, Deserialize)]
pub struct SessionData {
    pub access_token: Secret,
    #[serde(flatten)]
    pub profile: UserProfile,
    /// Kite's naive IST time, `YYYY-MM-DD HH:MM:SS`.
    pub login_time: String,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
}

/// `POST /session/refresh_token`'s answer.
#[derive(Debug, Clone, Deserialize)]
pub struct RenewData {
    pub access_token: Secret,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
}

/// `GET /user/profile`'s answer (the parts kited reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    /// Kite names the user in every profile; kited only needs the call to succeed.
    #[serde(rename = "user_id")]
    pub _user_id: String,
}

/// What one profile call showed: Kite's verdict, how long Kite took, and Kite's clock.
#[derive(Debug)]
pub struct Probe {
    /// `Err(Token)` when there was no token to show or Kite refused it.
    pub outcome: Result<Profile, KiteError>,
    /// Kite's `Date` header, when an answer came.
    pub kite_time: Option<chrono::DateTime<chrono::Utc>>,
    pub elapsed: Duration,
}

#[derive(Clone)]
pub struct KiteClient {
    http: reqwest::Client,
    root: String,
    api_key: String,
    api_secret: Secret,
    timeout: Duration,
}

impl KiteClient {
    pub fn new(root: &str, api_key: &str, api_secret: Secret, timeout: Duration) -> Self {
        let http = http_client::build(http_client::Outbound {
            connect_timeout: timeout,
            timeout: Some(timeout),
            redirects: 0,
        })
        .expect("reqwest client with static settings");
        KiteClient {
            http,
            root: root.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            api_secret,
            timeout,
        }
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Exchanges a one-time request token for a session. Never retried: the token is single use.
    pub async fn exchange(&self, request_token: &str) -> Result<SessionData, KiteError> {
        let checksum = session_checksum(&self.api_key, request_token, self.api_secret.expose());
        let request = self
            .http
            .post(format!("{}/session/token", self.root))
            .header("X-Kite-Version", KITE_VERSION)
            .form(&[
                ("api_key", self.api_key.as_str()),
                ("request_token", request_token),
                ("checksum", checksum.as_str()),
            ]);
        self.call(request).await
    }

    /// Renews a session with a refresh token (exchange-approved platforms only).
    pub async fn renew(&self, refresh_token: &Secret) -> Result<RenewData, KiteError> {
        let checksum = refresh_checksum(
            &self.api_key,
            refresh_token.expose(),
            self.api_secret.expose(),
        );
        let request = self
            .http
            .post(format!("{}/session/refresh_token", self.root))
            .header("X-Kite-Version", KITE_VERSION)
            .form(&[
                ("api_key", self.api_key.as_str()),
                ("refresh_token", refresh_token.expose()),
                ("checksum", checksum.as_str()),
            ]);
        self.call(request).await
    }

    /// The profile call: the only way to ask Kite whether a token is still alive.
    pub async fn profile(&self, access_token: &Secret) -> Result<Profile, KiteError> {
        let request = self
            .http
            .get(format!("{}/user/profile", self.root))
            .header("X-Kite-Version", KITE_VERSION)
            .header(
                "Authorization",
                format!("token {}:{}", self.api_key, access_token.expose()),
            );
        self.call(request).await
    }

    /// The profile call for the readiness checks: with a token it says whether the token
    /// lives; without one Kite still answers (403), which shows it is up and what its clock says.
    pub async fn probe(&self, access_token: Option<&Secret>) -> Probe {
        let mut request = self
            .http
            .get(format!("{}/user/profile", self.root))
            .header("X-Kite-Version", KITE_VERSION);
        if let Some(token) = access_token {
            request = request.header(
                "Authorization",
                format!("token {}:{}", self.api_key, token.expose()),
            );
        }
        let started = std::time::Instant::now();
        let (outcome, kite_time) = self.call_dated(request).await;
        Probe {
            outcome,
            kite_time,
            elapsed: started.elapsed(),
        }
    }

    /// Invalidates an access token at Kite.
    pub async fn logout(&self, access_token: &Secret) -> Result<(), KiteError> {
        self.delete_session("access_token", access_token).await
    }

    /// Invalidates a refresh token at Kite.
    pub async fn invalidate_refresh_token(&self, refresh_token: &Secret) -> Result<(), KiteError> {
        self.delete_session("refresh_token", refresh_token).await
    }

    async fn delete_session(&self, field: &str, token: &Secret) -> Result<(), KiteError> {
        let request = self
            .http
            .delete(format!("{}/session/token", self.root))
            .header("X-Kite-Version", KITE_VERSION)
            .query(&[("api_key", self.api_key.as_str()), (field, token.expose())]);
        let _: Value = self.call(request).await?;
        Ok(())
    }

    /// Sends one request and decodes Kite's envelope into `data` or a typed error.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, KiteError> {
        self.call_dated(request).await.0
    }

    /// [`KiteClient::call`], with the time in the answer's `Date` header when one came.
    async fn call_dated<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (Result<T, KiteError>, Option<chrono::DateTime<chrono::Utc>>) {
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return (Err(self.transport_error(e)), None),
        };
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(http_date);
        (self.answer(response).await, date)
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, KiteError> {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(32).collect::<String>());
        let body = read_body(response)
            .await
            .map_err(|e| self.transport_error(e))?;
        match decode(status, &body) {
            Err(KiteError::Unavailable { status, message }) if retry_after.is_some() => {
                Err(KiteError::Unavailable {
                    status,
                    message: format!(
                        "{message} (Kite asks to retry after {}s)",
                        retry_after.unwrap_or_default()
                    ),
                })
            }
            other => other,
        }
    }

    fn transport_error(&self, error: reqwest::Error) -> KiteError {
        if error.is_timeout() {
            return KiteError::Timeout(self.timeout);
        }
        // The URL may carry a token in its query: never let it into a message.
        let error = error.without_url();
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        if error.is_body() || error.is_decode() {
            KiteError::BadResponse(format!("the answer was cut off or unreadable ({message})"))
        } else {
            KiteError::Unreachable(message)
        }
    }
}

/// An HTTP `Date` (RFC 7231's IMF-fixdate, `Tue, 24 Nov 2026 03:20:00 GMT`).
fn http_date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            break;
        }
    }
    Ok(body)
}

/// Turns a status and body into `data` or the error the envelope describes.
fn decode<T: serde::de::DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, KiteError> {
    let envelope: Option<Value> = serde_json::from_slice(body).ok();
    // Kite's words end up in logs and on terminals: no control characters.
    let field = |name: &str| {
        envelope
            .as_ref()
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(crate::kite::display_text::clean_text)
    };
    if status.is_success() {
        let Some(mut envelope) = envelope else {
            return Err(KiteError::BadResponse(format!(
                "HTTP {} with a body that is not JSON",
                status.as_u16()
            )));
        };
        let data = envelope
            .get_mut("data")
            .map(Value::take)
            .ok_or_else(|| KiteError::BadResponse("no \"data\" in the answer".into()))?;
        return serde_json::from_value(data)
            .map_err(|e| KiteError::BadResponse(format!("unexpected \"data\": {e}")));
    }
    let message = field("message").unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    });
    let error_type = field("error_type").unwrap_or_default();
    let code = status.as_u16();
    match (code, error_type.as_str()) {
        (403, "TokenException") => Err(KiteError::Token(message)),
        (400, _) if error_type == "InputException" || error_type.is_empty() => {
            Err(KiteError::Input(message))
        }
        (429, _) | (500..=599, _) => Err(KiteError::Unavailable {
            status: code,
            message,
        }),
        _ if envelope.is_none() => Err(KiteError::Unavailable {
            status: code,
            message: format!("HTTP {code} without a Kite error envelope"),
        }),
        _ => Err(KiteError::Refused {
            status: code,
            error_type,
            message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, body: &str) -> KiteError {
        decode::<Value>(StatusCode::from_u16(status).unwrap(), body.as_bytes()).unwrap_err()
    }

    #[test]
    fn decodes_the_error_envelopes() {
        let envelope = |msg: &str, kind: &str| {
            format!(r#"{{"status":"error","message":"{msg}","error_type":"{kind}","data":null}}"#)
        };
        assert_eq!(
            err(
                403,
                &envelope("Token is invalid or has expired.", "TokenException")
            ),
            KiteError::Token("Token is invalid or has expired.".into())
        );
        assert!(matches!(
            err(
                400,
                &envelope(
                    "`api_key` should be minimum 6 characters in length.",
                    "InputException"
                )
            ),
            KiteError::Input(_)
        ));
        assert!(matches!(
            err(429, &envelope("Too many requests", "NetworkException")),
            KiteError::Unavailable { status: 429, .. }
        ));
        assert!(err(503, "<html>down</html>").is_transient());
        assert!(matches!(
            err(403, &envelope("no", "PermissionException")),
            KiteError::Refused { status: 403, .. }
        ));
        assert!(!err(403, &envelope("x", "TokenException")).is_transient());
    }

    #[test]
    fn decodes_the_mock_session() {
        let body = include_str!("../../../tests/mocks/generate_session.json");
        let data: SessionData = decode(StatusCode::OK, body.as_bytes()).unwrap();
        assert_eq!(data.profile.user_id, "XX0000");
        assert_eq!(data.profile.user_shortname, "Connect");
        assert_eq!(data.profile.exchanges.len(), 8);
        assert_eq!(data.profile.order_types, ["MARKET", "LIMIT", "SL", "SL-M"]);
        assert_eq!(data.login_time, "2021-01-01 16:15:14");
        assert_eq!(data.refresh_token.unwrap().expose(), "");
    }

    #[test]
    fn reads_http_dates() {
        assert_eq!(
            http_date("Tue, 24 Nov 2026 03:20:00 GMT").map(|t| t.to_rfc3339()),
            Some("2026-11-24T03:20:00+00:00".to_string())
        );
        assert_eq!(http_date("yesterday"), None);
    }

    #[test]
    fn success_without_json_is_a_bad_response() {
        assert!(matches!(
            decode::<Value>(StatusCode::OK, b"<html>"),
            Err(KiteError::BadResponse(_))
        ));
    }
}
