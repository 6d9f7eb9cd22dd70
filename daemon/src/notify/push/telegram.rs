//! Telegram's Bot API: `POST {api_root}/bot{TOKEN}/sendMessage` with an inline "Log in" button.
//! The token is part of the URL, so no URL ever reaches a log or an error message.

use super::message::Message;
use super::redact::Redaction;
use super::SendError;
use crate::config::push::TelegramSettings;
use serde_json::{json, Value};
use std::time::Duration;

/// Sends `message` once, within `timeout`.
pub async fn send(
    client: &reqwest::Client,
    settings: &TelegramSettings,
    message: &Message,
    timeout: Duration,
) -> Result<(), SendError> {
    let url = format!(
        "{}/bot{}/sendMessage",
        settings.api_root,
        settings.bot_token.expose()
    );
    let mut body = json!({"chat_id": settings.chat_id, "text": message.text});
    if let Some(link) = &message.link {
        body["reply_markup"] = json!({"inline_keyboard": [[{"text": "Log in", "url": link}]]});
    }
    let redact = Redaction::new(&[settings.bot_token.expose()]);
    let response = client
        .post(url)
        .timeout(timeout)
        .json(&body)
        .send()
        .await
        .map_err(|e| SendError::from_reqwest(e, &redact))?;
    let status = response.status().as_u16();
    let retry_header = super::retry_after_header(response.headers());
    let answer: Value = super::read_capped(response, &redact)
        .await
        .ok()
        .and_then(|body| serde_json::from_slice(&body).ok())
        .unwrap_or(Value::Null);
    if status == 200 && answer["ok"] == Value::Bool(true) {
        return Ok(());
    }
    // `{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3",
    //   "parameters":{"retry_after":3}}`
    let retry_after = answer["parameters"]["retry_after"]
        .as_u64()
        .map(Duration::from_secs)
        .or(retry_header);
    let code = answer["error_code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|_| status == 200)
        .unwrap_or(status);
    let detail = answer["description"]
        .as_str()
        .unwrap_or("no description")
        .to_string();
    Err(SendError::status(code, &detail, retry_after, &redact))
}
