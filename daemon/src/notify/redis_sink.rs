//! `[sinks.redis]`: keeps the token in Redis for programs on other hosts and in containers.
//!
//! The key holds the live token (`SET key VALUE EXAT <cutoff>`, so a dead token leaves Redis at
//! its cutoff even if kited is down) or nothing (`DEL key`); the channel carries the events that
//! changed it, exactly as `watch` sends them (they never hold the token). One task owns one
//! connection: it writes the state the session is in *now*, never a queue of older ones, so a
//! Redis that was away gets the latest token and nothing stale. Failures are retried with a
//! doubling backoff, and a lost connection (a Redis restart) is noticed as it happens, so an
//! emptied Redis gets the key back within seconds. Nothing here ever blocks the socket or HTTP.

use crate::config::sinks::RedisSettings;
use crate::session::Session;
use crate::token::TokenRecord;
use kite_proto::EventName;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo, PushKind,
    RedisConnectionInfo,
};
use serde::Serialize;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The sink's name in `status`.
pub const NAME: &str = "redis";
/// The first retry after a failure; each further one waits twice as long...
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// ...up to this: a Redis that is down for hours costs one attempt a minute.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Connecting (TCP, TLS, `HELLO`/auth) may take this long; a healthy Redis on a LAN takes
/// milliseconds, so anything slower is treated as down and retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One command may take this long before the connection is given up as hung.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The events that change what the key holds; each is published after the key is written.
const KEY_EVENTS: &[EventName] = &[
    EventName::TokenNew,
    EventName::TokenExpired,
    EventName::TokenInvalidated,
];

/// What the key should hold right now.
#[derive(Debug, PartialEq)]
enum Desired {
    /// The token's JSON, until `exat` (Unix seconds on the real clock).
    Set {
        value: String,
        exat: u64,
    },
    Delete,
}

/// The key's value: what a program needs to call Kite, and when it stops working.
#[derive(Serialize)]
struct KeyValue<'a> {
    api_key: &'a str,
    access_token: &'a str,
    expires_at: String,
    user_id: &'a str,
    login_time: String,
}

/// Why a write did not go through; never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct SinkError(String);

/// An open connection, and the channel on which the client reports that it closed.
struct Link {
    connection: MultiplexedConnection,
    closed: UnboundedReceiver<PushInfo>,
}

/// Keeps Redis in step with the token until `shutdown`.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let mut token = session.watch_token();
    let mut config = session.watch_settings();
    let mut events = session.events().subscribe("sinks.redis");
    let mut settings = session.config().sinks.redis.clone();
    let mut link: Option<Link> = None;
    // Something to write: at start, the state kited starts in.
    let mut pending = true;
    // The latest event that changed the key, published once the key matches it.
    let mut event: Option<String> = None;
    let mut backoff = FIRST_RETRY;
    let mut retry_at: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    match &settings {
        Some(s) => session.set_sink(NAME, Some(Err(format!("connecting to {}", s.url)))),
        None => session.set_sink(NAME, None),
    }
    loop {
        if let Some(current) = settings.as_ref().filter(|_| pending && retry_at.is_none()) {
            let attempt = tokio::time::timeout(
                CONNECT_TIMEOUT + 2 * RESPONSE_TIMEOUT,
                write(&mut link, current, &session, event.as_deref()),
            );
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = attempt => outcome.unwrap_or_else(|_| {
                    Err(SinkError(format!("{}: no answer in time", current.url)))
                }),
            };
            match outcome {
                Ok(done) => {
                    tracing::info!("redis: {done}");
                    pending = false;
                    event = None;
                    backoff = FIRST_RETRY;
                    last_error = None;
                    session.set_sink(NAME, Some(Ok(())));
                }
                Err(SinkError(why)) => {
                    link = None;
                    let why = blot(&why, current);
                    if last_error.as_deref() != Some(why.as_str()) {
                        tracing::warn!("redis: {why}; retrying in {backoff:?}");
                    } else {
                        tracing::debug!("redis: {why}; retrying in {backoff:?}");
                    }
                    session.set_sink(NAME, Some(Err(why.clone())));
                    last_error = Some(why);
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_RETRY);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = token.changed() => {
                if changed.is_err() { return }
                pending = true;
            }
            changed = config.changed() => {
                if changed.is_err() { return }
                let new = session.config().sinks.redis.clone();
                if new != settings {
                    match &new {
                        Some(s) => session.set_sink(NAME, Some(Err(format!("connecting to {}", s.url)))),
                        None => session.set_sink(NAME, None),
                    }
                    settings = new;
                    link = None;
                    pending = true;
                    retry_at = None;
                    backoff = FIRST_RETRY;
                }
            }
            received = events.next() => match received {
                Some(received) if KEY_EVENTS.contains(&received.kind.event_name()) => {
                    event = Some(received.to_line().trim_end().to_string());
                    pending = true;
                    // A login is exactly when bots wait: try now rather than at the next retry.
                    retry_at = None;
                }
                // A lag may have hidden a key event: write the key again.
                Some(_) => pending |= events.missed_some(),
                None => return,
            },
            _ = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            _ = closed(&mut link), if link.is_some() => {
                link = None;
                pending = true;
                let why = "the connection was lost; reconnecting".to_string();
                tracing::warn!("redis: {why}");
                session.set_sink(NAME, Some(Err(why)));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the client reports the connection closed (Redis restarted, the network
/// dropped it, a proxy timed it out).
async fn closed(link: &mut Option<Link>) {
    let Some(link) = link else {
        return std::future::pending().await;
    };
    loop {
        match link.closed.recv().await {
            Some(info) if info.kind == PushKind::Disconnection => return,
            Some(_) => continue,
            None => return,
        }
    }
}

/// Writes the current state (connecting first when needed), then publishes `event`. Returns
/// what was done, for the log.
async fn write(
    link: &mut Option<Link>,
    settings: &RedisSettings,
    session: &Session,
    event: Option<&str>,
) -> Result<String, SinkError> {
    let connection = match link {
        Some(link) => link,
        None => link.insert(connect(settings).await?),
    };
    let connection = &mut connection.connection;
    let failed = |what: &str, e: redis::RedisError| {
        SinkError(format!("{} refused {what}: {}", settings.url, describe(&e)))
    };
    let done = match desired(session) {
        Desired::Set { value, exat } => {
            redis::cmd("SET")
                .arg(&settings.key)
                .arg(value)
                .arg("EXAT")
                .arg(exat)
                .query_async::<()>(connection)
                .await
                .map_err(|e| failed(&format!("SET {}", settings.key), e))?;
            format!("{} holds the token until {exat} (Unix time)", settings.key)
        }
        Desired::Delete => {
            redis::cmd("DEL")
                .arg(&settings.key)
                .query_async::<()>(connection)
                .await
                .map_err(|e| failed(&format!("DEL {}", settings.key), e))?;
            format!("{} deleted: no valid token", settings.key)
        }
    };
    if let Some(event) = event {
        redis::cmd("PUBLISH")
            .arg(&settings.channel)
            .arg(event)
            .query_async::<()>(connection)
            .await
            .map_err(|e| failed(&format!("PUBLISH {}", settings.channel), e))?;
        return Ok(format!("{done}; event published on {}", settings.channel));
    }
    Ok(done)
}

/// A new connection speaking RESP3, whose closing the client reports as a push message.
async fn connect(settings: &RedisSettings) -> Result<Link, SinkError> {
    let cannot = |e: redis::RedisError| {
        SinkError(format!(
            "cannot connect to {}: {}",
            settings.url,
            describe(&e)
        ))
    };
    let addr = if settings.tls {
        ConnectionAddr::TcpTls {
            host: settings.host.clone(),
            port: settings.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(settings.host.clone(), settings.port)
    };
    let info = ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: settings.db,
            username: settings.username.clone(),
            password: settings.password.as_ref().map(|p| p.expose().to_string()),
            protocol: ProtocolVersion::RESP3,
        },
    };
    let client = match &settings.ca_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
    .map_err(cannot)?;
    let (sender, closed) = tokio::sync::mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_push_sender(sender);
    let connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(cannot)?;
    tracing::info!("redis: connected to {}", settings.url);
    Ok(Link { connection, closed })
}

/// The error in words: the server's own message when it sent one (`WRONGPASS ...`,
/// `NOPERM ...`), else the client's description.
fn describe(e: &redis::RedisError) -> String {
    let text = e.to_string();
    match e.kind() {
        redis::ErrorKind::AuthenticationFailed => {
            format!("authentication failed (check sinks.redis.username and the password): {text}")
        }
        _ => text,
    }
}

/// `text` without the password, whatever a library put into it.
fn blot(text: &str, settings: &RedisSettings) -> String {
    match &settings.password {
        Some(password) if !password.is_empty() => text.replace(password.expose(), "<redacted>"),
        _ => text.to_string(),
    }
}

/// What the key should hold now: the usable token until its cutoff, else nothing.
fn desired(session: &Session) -> Desired {
    let Some(record) = session.current() else {
        return Desired::Delete;
    };
    if !session.state_of(&record).is_usable() {
        return Desired::Delete;
    }
    let left = (record.expires_at.with_timezone(&chrono::Utc) - session.now()).num_milliseconds();
    let real_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    match key_value(&record, real_now, left) {
        Some(set) => set,
        None => Desired::Delete,
    }
}

/// The SET for `record` with `left_ms` of life left by kited's clock, on the real clock
/// `real_now_ms` (they differ only under the testing clock). Rounded down: the key never
/// outlives the cutoff. `None` when less than a second is left.
fn key_value(record: &TokenRecord, real_now_ms: i64, left_ms: i64) -> Option<Desired> {
    if left_ms < 1000 {
        return None;
    }
    let exat = u64::try_from((real_now_ms + left_ms) / 1000).ok()?;
    let value = serde_json::to_string(&KeyValue {
        api_key: &record.api_key,
        access_token: record.access_token.expose(),
        expires_at: crate::clock::rfc3339(record.expires_at),
        user_id: &record.profile.user_id,
        login_time: crate::clock::rfc3339(record.login_time),
    })
    .expect("a struct of strings serializes");
    Some(Desired::Set { value, exat })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_and_its_expiry() {
        let record = TokenRecord::sample("tok_abc", "2026-11-24T06:00:00+05:30");
        let Some(Desired::Set { value, exat }) = key_value(&record, 1_000_000_500, 3_600_700)
        else {
            panic!("a usable token is set");
        };
        assert_eq!(exat, 1_000_000 + 3_601);
        let value: serde_json::Value = serde_json::from_str(&value).unwrap();
        assert_eq!(value["access_token"], "tok_abc");
        assert_eq!(value["api_key"], "kitedtestkey0001");
        assert_eq!(value["user_id"], "AB1234");
        assert_eq!(value["expires_at"], "2026-11-24T06:00:00+05:30");
        assert_eq!(value["login_time"], "2026-11-23T09:00:00+05:30");
        assert_eq!(value.as_object().unwrap().len(), 5);
        assert!(key_value(&record, 1_000_000_000, 999).is_none());
    }
}
