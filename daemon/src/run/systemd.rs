//! Talking to systemd: readiness, reload and stop notifications, the `STATUS=` line kept
//! current, and the watchdog pings (sd_notify(3)). Without `NOTIFY_SOCKET` all of it is silent.

use crate::session::Session;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// READY=1 with a status line: the listeners are bound (at start) or a reload is done.
pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// RELOADING=1, with the monotonic time systemd >= 253 wants (older versions ignore it).
pub fn reloading() {
    let mut states = vec![sd_notify::NotifyState::Reloading];
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// STOPPING=1.
pub fn stopping() {
    notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
}

/// Whether a service manager listens for sd_notify messages (`NOTIFY_SOCKET`).
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// Sends sd_notify state changes; without `NOTIFY_SOCKET` this does nothing. A failure to reach
/// the manager is logged at debug level and otherwise ignored: it must never stop the daemon.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("cannot notify the service manager: {e}");
    }
}

/// One line for `systemctl status`: profile, state and expiry. Never the token.
pub fn status_line(session: &Session) -> String {
    let status = session.status();
    let state = status.state.as_str();
    if !status.configured {
        return format!(
            "profile {}: not configured (api key or secret missing)",
            status.profile
        );
    }
    match (&status.user_id, &status.expires_at) {
        (Some(user), Some(expires)) if status.valid => {
            format!(
                "profile {}: {state}, {user} until {expires}",
                status.profile
            )
        }
        _ => format!("profile {}: {state}, login required", status.profile),
    }
}

/// Keeps the `STATUS=` line current. Wakes only when something changes (a token, a reload or an
/// event), never on a timer.
pub async fn report_status(session: Session, shutdown: CancellationToken) {
    let mut token = session.watch_token();
    let mut config = session.watch_settings();
    let mut events = session.events().subscribe("the systemd status");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = token.changed() => if changed.is_err() { return },
            changed = config.changed() => if changed.is_err() { return },
            event = events.next() => if event.is_none() { return },
        }
        let line = status_line(&session);
        notify(&[sd_notify::NotifyState::Status(&line)]);
    }
}

/// The ping interval when systemd's watchdog is on for this process (`WATCHDOG_USEC`, and
/// `WATCHDOG_PID` naming us if set): half the timeout, as sd_watchdog_enabled(3) advises.
pub fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// Sends `WATCHDOG=1` every `every` from the daemon's own (single-threaded) runtime: if any task
/// ever blocks that thread, the pings stop and systemd restarts kited.
pub async fn ping_watchdog(every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_us() {
        let half = Some(Duration::from_secs(5));
        assert_eq!(watchdog_interval_from(Some("10000000"), None, 42), half);
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("42"), 42),
            half
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("41"), 42),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("x"), 42),
            None
        );
        assert_eq!(watchdog_interval_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 42), None);
    }
}
