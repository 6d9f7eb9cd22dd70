//! ntfy: `POST {url}` with the text as the body and `Title`, `Priority`, `Click` and `Actions`
//! headers (a "Log in" view action), `Authorization: Bearer` when a token is set.

use super::message::Message;
use super::redact::Redaction;
use super::SendError;
use crate::config::push::NtfySettings;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde_json::Value;
use std::time::Duration;

/// Sends `message` once, within `timeout`.
pub async fn send(
    client: &reqwest::Client,
    settings: &NtfySettings,
    message: &Message,
    timeout: Duration,
) -> Result<(), SendError> {
    let secrets: Vec<&str> = settings.token.iter().map(|t| t.expose()).collect();
    let secrets = Redaction::new(&secrets);
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    put("Title", &message.title);
    put("Priority", &message.priority.to_string());
    if let Some(link) = &message.link {
        put("Click", link);
        put("Actions", &format!("view, Log in, {link}"));
    }
    if let Some(token) = &settings.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| SendError::Config("the ntfy token is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let response = client
        .post(&settings.url)
        .timeout(timeout)
        .headers(headers)
        .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(message.text.clone())
        .send()
        .await
        .map_err(|e| SendError::from_reqwest(e, &secrets))?;
    let status = response.status().as_u16();
    let retry_after = super::retry_after_header(response.headers());
    if (200..300).contains(&status) {
        return Ok(());
    }
    // `{"code":40101,"http":401,"error":"unauthorized","link":"https://ntfy.sh/docs/..."}`
    let answer: Value = super::read_capped(response, &secrets)
        .await
        .ok()
        .and_then(|body| serde_json::from_slice(&body).ok())
        .unwrap_or(Value::Null);
    let detail = answer["error"]
        .as_str()
        .unwrap_or("no description")
        .to_string();
    Err(SendError::status(status, &detail, retry_after, &secrets))
}
