//! Phone push: token events to Telegram and ntfy. Each delivery to each channel is its own task
//! with a few bounded retries, so a slow or dead channel holds up nothing else; with nothing to
//! send, nothing here runs (no timer, no idle connection).

pub mod message;
mod ntfy;
mod redact;
mod telegram;

use crate::config::push::PushSettings;
use crate::session::delivery::{DeliveryHealth, Ticket};
use crate::session::Session;
use message::Message;
use redact::Redaction;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Tries per message: the first and two retries.
pub const MAX_ATTEMPTS: u32 = 3;
/// All tries of one message fit in this window; a retry that would start later is dropped (a
/// login reminder a quarter of an hour late is noise, and the next event sends a fresh one).
pub const RETRY_WINDOW: Duration = Duration::from_secs(60);
/// One try may take this long: both services answer in well under a second when healthy.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits before the second and third try when the service did not say how long to wait.
const BACKOFF: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(5)];
/// The most of an answer kited reads: both services' answers are a few hundred bytes, and an
/// endpoint that sends more (an endless body, a decompression bomb) must not grow kited's memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The most of an endpoint's error text shown, after cleaning.
const MAX_DETAIL_CHARS: usize = 200;

/// Why one try failed. Messages never contain a channel's token or URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the service: {0}")]
    Network(String),
    #[error("HTTP {status}: {detail}")]
    Status {
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Config(String),
}

impl SendError {
    /// A failed request, described without its URL (a Telegram URL holds the bot token) and
    /// with every secret in `redact` blotted out of the cause chain.
    fn from_reqwest(error: reqwest::Error, redact: &Redaction) -> SendError {
        if error.is_timeout() {
            return SendError::Timeout(ATTEMPT_TIMEOUT);
        }
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        SendError::Network(shown(&text, redact))
    }

    fn status(
        status: u16,
        detail: &str,
        retry_after: Option<Duration>,
        redact: &Redaction,
    ) -> Self {
        let detail = shown(detail, redact);
        SendError::Status {
            status,
            detail,
            retry_after,
        }
    }

    /// Timeouts, unreachable services, 5xx and 429 may pass; any other answer will not.
    fn is_transient(&self) -> bool {
        match self {
            SendError::Timeout(_) | SendError::Network(_) => true,
            SendError::Status { status, .. } => *status == 429 || *status >= 500,
            SendError::Config(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Remote text as it may be shown: control characters out first (so none can hide a
/// credential from the redaction), every credential blotted out, then cut short.
fn shown(text: &str, redact: &Redaction) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    redact
        .apply(&clean)
        .chars()
        .take(MAX_DETAIL_CHARS)
        .collect::<String>()
        .trim()
        .to_string()
}

/// At most [`MAX_ANSWER_BYTES`] of an answer's body, read as it streams in; the rest is never
/// read (the connection is dropped with the response).
async fn read_capped(
    mut response: reqwest::Response,
    redact: &Redaction,
) -> Result<Vec<u8>, SendError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SendError::from_reqwest(e, redact))?
    {
        let room = MAX_ANSWER_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(body)
}

/// How long to wait before the next try: what the service asked for, or the backoff. `None`
/// when that wait would end outside [`RETRY_WINDOW`] (whatever the service asked for, even
/// 2^64-1 seconds: the sum saturates and is compared, never added to an `Instant`).
fn next_wait(asked: Option<Duration>, backoff: Duration, elapsed: Duration) -> Option<Duration> {
    let wait = asked.unwrap_or(backoff).min(RETRY_WINDOW);
    let asked_too_much = asked.is_some_and(|asked| asked > RETRY_WINDOW);
    (!asked_too_much && elapsed.saturating_add(wait) < RETRY_WINDOW).then_some(wait)
}

/// A `Retry-After: SECONDS` header.
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// One configured channel.
#[derive(Debug, Clone)]
pub enum Channel {
    Telegram(crate::config::push::TelegramSettings),
    Ntfy(crate::config::push::NtfySettings),
}

impl Channel {
    /// The names of the configured channels, as the delivery health knows them.
    pub fn names(settings: &PushSettings) -> Vec<&'static str> {
        Channel::all(settings).iter().map(Channel::name).collect()
    }

    fn all(settings: &PushSettings) -> Vec<Channel> {
        let telegram = settings.telegram.clone().map(Channel::Telegram);
        let ntfy = settings.ntfy.clone().map(Channel::Ntfy);
        telegram.into_iter().chain(ntfy).collect()
    }

    fn name(&self) -> &'static str {
        match self {
            Channel::Telegram(_) => "telegram",
            Channel::Ntfy(_) => "ntfy",
        }
    }

    async fn send(
        &self,
        client: &reqwest::Client,
        message: &Message,
        timeout: Duration,
    ) -> Result<(), SendError> {
        match self {
            Channel::Telegram(settings) => telegram::send(client, settings, message, timeout).await,
            Channel::Ntfy(settings) => ntfy::send(client, settings, message, timeout).await,
        }
    }
}

/// The HTTP client for every channel. No pooled idle connection: one would wake the idle
/// daemon later only to be closed.
fn http_client() -> reqwest::Client {
    crate::kite::http_client::build(crate::kite::http_client::Outbound {
        connect_timeout: ATTEMPT_TIMEOUT,
        timeout: None,
        redirects: 0,
    })
    .expect("reqwest client with static settings")
}

/// Sends every event `push.events` names to every configured channel, until `shutdown`.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let mut events = session.events().subscribe("push");
    let client = http_client();
    for name in Channel::names(&session.config().push) {
        session.push_health().register(name);
    }
    loop {
        let Some(event) = events.next_until(&shutdown).await else {
            return;
        };
        let config = session.config();
        if !config.push.any() || !config.push.wants(event.kind.event_name()) {
            continue;
        }
        let message = message::compose(&event, &session);
        for channel in Channel::all(&config.push) {
            let client = client.clone();
            let message = message.clone();
            let health = session.push_health().clone();
            let ticket = health.begin(channel.name());
            session.in_flight().spawn(
                format!("push {} to {}", message.event, channel.name()),
                async move { deliver(&channel, &client, &message, &health, ticket).await },
            );
        }
    }
}

/// Up to [`MAX_ATTEMPTS`] tries within [`RETRY_WINDOW`], waiting what the service asked for
/// (Telegram's `retry_after`) or [`BACKOFF`]. The outcome is logged once.
/// Every try's outcome goes into `health` under `ticket`.
async fn deliver(
    channel: &Channel,
    client: &reqwest::Client,
    message: &Message,
    health: &DeliveryHealth,
    ticket: Ticket,
) {
    let name = channel.name();
    let started = Instant::now();
    for attempt in 1..=MAX_ATTEMPTS {
        let left = RETRY_WINDOW.saturating_sub(started.elapsed());
        let error = match channel
            .send(client, message, ATTEMPT_TIMEOUT.min(left))
            .await
        {
            Ok(()) => {
                tracing::info!("push: {name} delivered {} (try {attempt})", message.event);
                health.delivered(name, ticket);
                return;
            }
            Err(error) => error,
        };
        health.failed(name, ticket, &error.to_string());
        if !error.is_transient() {
            tracing::warn!(
                "push: {name} refused {}: {error}; not retrying",
                message.event
            );
            return;
        }
        if attempt == MAX_ATTEMPTS {
            tracing::warn!(
                "push: {name} failed {} after {MAX_ATTEMPTS} tries: {error}",
                message.event
            );
            return;
        }
        let backoff = BACKOFF[(attempt - 1) as usize];
        let Some(wait) = next_wait(error.retry_after(), backoff, started.elapsed()) else {
            let asked = error.retry_after().unwrap_or(backoff);
            tracing::warn!(
                "push: {name} failed {}: {error}; a retry in {}s would be too late, giving up",
                message.event,
                asked.as_secs()
            );
            return;
        };
        tracing::info!(
            "push: {name} try {attempt} for {} failed ({error}); retrying in {wait:?}",
            message.event
        );
        tokio::time::sleep(wait).await;
    }
}

/// One channel's answer to `push_test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub channel: &'static str,
    pub error: Option<String>,
}

/// Sends the test message once (no retries) through every channel at the same time.
pub async fn test(session: &Session) -> Vec<TestResult> {
    let config = session.config();
    let message = message::test(session);
    let client = http_client();
    let tasks: Vec<_> = Channel::all(&config.push)
        .into_iter()
        .map(|channel| {
            let client = client.clone();
            let message = message.clone();
            // The test message is the channel's most recent one: its outcome is the channel's
            // health (a push-test after fixing a channel clears its failure).
            let health = session.push_health().clone();
            let ticket = health.begin(channel.name());
            tokio::spawn(async move {
                let outcome = channel.send(&client, &message, ATTEMPT_TIMEOUT).await;
                match &outcome {
                    Ok(()) => health.delivered(channel.name(), ticket),
                    Err(e) => {
                        tracing::warn!("push test: {} failed: {e}", channel.name());
                        health.failed(channel.name(), ticket, &e.to_string());
                    }
                }
                TestResult {
                    channel: channel.name(),
                    error: outcome.err().map(|e| e.to_string()),
                }
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(result) = task.await {
            results.push(result);
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_control_characters_are_kept_out() {
        let redact = Redaction::new(&["123:abc", ""]);
        assert_eq!(
            shown("error for https://api/bot123:abc/sendMessage", &redact),
            "error for https://api/bot<redacted>/sendMessage"
        );
        // A control character inside the token hides it from no one.
        assert_eq!(
            shown("bad\u{1b}[2J token 123:a\u{0}bc\n", &redact),
            "bad[2J token <redacted>"
        );
        assert_eq!(shown(&"x".repeat(500), &redact).len(), MAX_DETAIL_CHARS);
    }

    #[test]
    fn huge_retry_after_gives_up_instead_of_overflowing() {
        let second = Duration::from_secs(1);
        let backoff = BACKOFF[0];
        assert_eq!(next_wait(None, backoff, second), Some(backoff));
        assert_eq!(
            next_wait(Some(3 * second), backoff, second),
            Some(3 * second)
        );
        assert_eq!(next_wait(Some(Duration::MAX), backoff, second), None);
        assert_eq!(
            next_wait(Some(Duration::from_secs(u64::MAX)), backoff, Duration::MAX),
            None
        );
        assert_eq!(
            next_wait(Some(RETRY_WINDOW + second), backoff, second),
            None
        );
        assert_eq!(next_wait(Some(30 * second), backoff, 40 * second), None);
    }

    #[test]
    fn what_is_retried() {
        let status = |status| SendError::Status {
            status,
            detail: String::new(),
            retry_after: None,
        };
        assert!(status(429).is_transient());
        assert!(status(500).is_transient() && status(503).is_transient());
        assert!(!status(400).is_transient() && !status(401).is_transient());
        assert!(!status(403).is_transient() && !status(404).is_transient());
        assert!(SendError::Timeout(ATTEMPT_TIMEOUT).is_transient());
        assert!(SendError::Network("refused".into()).is_transient());
    }
}
