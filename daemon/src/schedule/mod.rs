//! The timed work around the cutoff: expiry warnings, the expiry itself, renewal, the periodic
//! profile check, the pre-market reminder and its repeats, and the morning readiness check. Sleeps on a wall-clock alarm until the next thing
//! [`crate::schedule::plan`] says is due, then acts, so idle means asleep.

pub(crate) mod alarm;
pub(crate) mod plan;

use crate::clock;
use crate::schedule::alarm::{Wake, WallAlarm};
use crate::schedule::plan::{is_trading_day, next_readiness, plan, Action, Done};
use crate::session::Session;
use crate::token::TokenRecord;
use chrono::{DateTime, Utc};
use kite_proto::{EventKind, TokenState};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long after a failed renewal or a transient verify failure to try again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs the schedule until `shutdown`. Replans on a new token, a reload, or a clock jump.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let alarm = match WallAlarm::new() {
        Ok(alarm) => alarm,
        Err(e) => {
            tracing::error!("cannot create the wall-clock timer ({e}); no scheduled warnings");
            return;
        }
    };
    let mut token_changes = session.watch_token();
    let mut config_changes = session.watch_settings();
    let mut done = Done::default();
    let mut reminder_from = session.now();
    let mut readiness_from = session.now();
    loop {
        let now = session.now();
        let token = session.current();
        let config = session.config();
        done.follow(token.as_deref(), now);
        let reminder_next = config.expiry.reminder.next_after(reminder_from);
        let readiness_next = config
            .is_configured()
            .then(|| next_readiness(readiness_from, &config.readiness, &config.expiry))
            .flatten();
        let plan = plan(
            now,
            token.as_deref(),
            &config.expiry,
            &done,
            reminder_next,
            &config.readiness,
            readiness_next,
        );
        if !plan.due.is_empty() {
            for action in plan.due {
                act(&session, &action, token.as_deref(), &mut done, now).await;
                match action {
                    Action::Remind => reminder_from = now,
                    Action::CheckReadiness => readiness_from = now,
                    _ => {}
                }
            }
            // Acting moved the goal posts (the next verify, a retry, a new token): plan again
            // rather than sleep on a plan made before. Every action marks itself done, so the
            // next plan has nothing due at once.
            continue;
        }
        // The alarm works in real wall time; the session's clock may be offset (tests).
        let skew = session.now() - Utc::now();
        let sleep = async {
            match plan.next {
                Some(when) => alarm.sleep_until(when - skew).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            woke = sleep => match woke {
                Ok(Wake::Due) => {}
                Ok(Wake::ClockChanged) => {
                    tracing::info!("the wall clock jumped (suspend or time change): replanning");
                }
                Err(e) => {
                    tracing::error!("wall-clock timer failed ({e}); schedule stopped");
                    return;
                }
            },
            changed = token_changes.changed() => if changed.is_err() { return },
            changed = config_changes.changed() => {
                if changed.is_err() { return }
                reminder_from = session.now();
                readiness_from = session.now();
            }
        }
    }
}

async fn act(
    session: &Session,
    action: &Action,
    token: Option<&TokenRecord>,
    done: &mut Done,
    now: DateTime<Utc>,
) {
    match action {
        Action::Warn { window_secs } => {
            // The wider windows have passed too: they must not fire after this one.
            let passed = session
                .config()
                .expiry
                .warn_before
                .iter()
                .map(Duration::as_secs)
                .filter(|secs| secs >= window_secs)
                .chain(std::iter::once(*window_secs))
                .collect::<Vec<_>>();
            done.warned.extend(passed);
            if let Some(token) = token {
                let left = clock::seconds_left(now, token.expires_at);
                session.events().emit(EventKind::TokenExpiring {
                    minutes_left: (left + 59) / 60,
                    expires_at: clock::rfc3339(token.expires_at),
                });
            }
        }
        Action::Expire => {
            done.expired = true;
            if let Some(token) = token {
                session.events().emit(EventKind::TokenExpired {
                    expires_at: clock::rfc3339(token.expires_at),
                });
            }
        }
        Action::Renew => {
            // Whatever happens, not again before the retry time: a success brings a new token
            // (and a fresh `Done`), a failure or nothing to renew with must not spin.
            done.next_renew =
                Some(now + chrono::Duration::from_std(RETRY_AFTER).unwrap_or_default());
            renew(session, token, done).await
        }
        Action::Verify => {
            done.last_verify = Some(now);
            if let Err(e) = session.verify().await {
                tracing::warn!("token check with Kite failed, will try again: {e}");
                let retry = chrono::Duration::from_std(RETRY_AFTER).unwrap_or_default();
                let interval = chrono::Duration::from_std(session.config().expiry.verify_every)
                    .unwrap_or_default();
                if retry < interval {
                    done.last_verify = Some(now - interval + retry);
                }
            }
        }
        Action::Remind => {
            done.last_remind = Some(now);
            let config = session.config();
            let today = clock::ist(now).date_naive();
            let usable = session
                .current()
                .is_some_and(|t| session.state_of(&t).is_usable());
            if is_trading_day(today, &config.expiry) && !usable && config.is_configured() {
                let login_url = session.login_url().ok().map(|(url, _)| url);
                session
                    .events()
                    .emit(EventKind::LoginRequired { login_url });
            }
        }
        Action::CheckReadiness => {
            // The checks wait on Kite and the IP echo (up to kite.timeout each): on their own
            // task, so the schedule keeps its time meanwhile.
            let checked = session.clone();
            session
                .in_flight()
                .spawn("the readiness check", async move {
                    let checks = crate::readiness::run(&checked).await;
                    let kind = if checks.iter().all(|c| c.ok) {
                        EventKind::MarketReady { checks }
                    } else {
                        EventKind::MarketNotReady { checks }
                    };
                    checked.events().emit(kind);
                });
        }
    }
}

/// Renews at the cutoff. A transient failure is retried after [`RETRY_AFTER`]; a refusal (the
/// refresh token is dead) is not retried, and the person is told the token expired.
async fn renew(session: &Session, token: Option<&TokenRecord>, done: &mut Done) {
    let error = match session.renew().await {
        Ok(Some(_)) => return,
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("renewing with the refresh token failed: {e}");
            Some(e)
        }
    };
    if error.is_none_or(|e| !e.kind().is_transient()) {
        done.renew_refused = true;
    }
    if !done.expired && token.is_some_and(|t| session.state_of(t) == TokenState::Expired) {
        done.expired = true;
        session.events().emit(EventKind::TokenExpired {
            expires_at: token
                .map(|t| clock::rfc3339(t.expires_at))
                .unwrap_or_default(),
        });
    }
}
