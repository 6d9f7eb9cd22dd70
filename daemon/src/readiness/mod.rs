//! The readiness checks: will programs be able to trade at 09:15? Each check passes or fails
//! with one sentence that says what was seen and what to do. They run at once, each bounded by
//! `kite.timeout`, on the caller's task (never the socket's accept loop or another client's).

mod ip_echo;

use crate::kite::{KiteError, Probe};
use crate::session::delivery::Health;
use crate::session::Session;
use crate::token::TokenRecord;
use chrono::{DateTime, Utc};
use kite_proto::Check;

/// Kite's `Date` is whole seconds and the host may be a little off; two seconds either way is
/// what exchanges tolerate before order timestamps look odd.
const CLOCK_TOLERANCE_MS: i64 = 2000;
/// A `Date` header is the second its answer was made, truncated: on average half a second
/// behind the moment it describes.
const DATE_TRUNCATION_MS: i64 = 500;

const LOG_IN: &str = "log in with `kitectl login --open` (or the Log in button) before 09:15";

/// Runs every check now: `token`, `kite`, `ip` (only with `readiness.static_ips`), `clock`,
/// `sinks`, `push`, in that order.
pub async fn run(session: &Session) -> Vec<Check> {
    let config = session.config();
    let probe = async {
        let outcome = session.probe_kite().await;
        (outcome, session.now())
    };
    let ip = async {
        if config.readiness.static_ips.is_empty() {
            None
        } else {
            Some(ip_echo::check(&config.readiness, config.kite_timeout).await)
        }
    };
    let ((probed, answered_at), ip) = tokio::join!(probe, ip);
    let mut checks = match probed {
        Ok((token, probe)) => {
            let mut checks = vec![
                token_check(session, token.as_deref(), &probe),
                kite_check(&probe),
            ];
            checks.extend(ip);
            checks.push(clock_check(&probe, answered_at));
            checks
        }
        Err(e) => {
            let detail = format!("kited is not set up ({e}): run `kitectl setup`");
            let mut checks = vec![
                Check::failed("token", &detail),
                Check::failed("kite", &detail),
            ];
            checks.extend(ip);
            checks.push(Check::failed(
                "clock",
                "Kite's clock was not read: kited is not set up",
            ));
            checks
        }
    };
    checks.push(sinks_check(session));
    checks.push(push_check(session));
    checks
}

fn token_check(session: &Session, token: Option<&TokenRecord>, probe: &Probe) -> Check {
    let Some(token) = token else {
        let state = session.status().state;
        return Check::failed("token", format!("no valid token (it is {state}): {LOG_IN}"));
    };
    match &probe.outcome {
        Ok(_) => Check::passed(
            "token",
            format!(
                "logged in as {} until {} IST",
                token.profile.who(),
                token
                    .expires_at
                    .with_timezone(&crate::clock::IST)
                    .format("%H:%M")
            ),
        ),
        Err(KiteError::Token(message)) => Check::failed(
            "token",
            format!("Kite refused the token ({message}); it is now invalidated: {LOG_IN}"),
        ),
        Err(e) => Check::failed(
            "token",
            format!("could not confirm the token with Kite ({e}); see the kite check"),
        ),
    }
}

fn kite_check(probe: &Probe) -> Check {
    let answered = || {
        Check::passed(
            "kite",
            format!("Kite answered in {} ms", probe.elapsed.as_millis()),
        )
    };
    match &probe.outcome {
        Ok(_) => answered(),
        Err(e @ KiteError::Timeout(_)) => Check::failed(
            "kite",
            format!("{e}: check this host's network and https://kite.trade's status"),
        ),
        Err(e @ KiteError::Unreachable(_)) => Check::failed(
            "kite",
            format!("{e}: check the network, DNS and kite.api_root"),
        ),
        Err(e @ (KiteError::Unavailable { .. } | KiteError::BadResponse(_))) => Check::failed(
            "kite",
            format!("{e}: Kite is having trouble; run `kitectl doctor` again in a few minutes"),
        ),
        // Kite answered, whatever it thought of the token.
        Err(_) => answered(),
    }
}

fn clock_check(probe: &Probe, answered_at: DateTime<Utc>) -> Check {
    let Some(kite_time) = probe.kite_time else {
        return Check::failed(
            "clock",
            "Kite's clock was not read (no answer with a Date header); see the kite check",
        );
    };
    let skew_ms = (answered_at - kite_time).num_milliseconds() - DATE_TRUNCATION_MS;
    let secs = (skew_ms.abs() as f64 / 1000.0).round() as i64;
    if skew_ms.abs() <= CLOCK_TOLERANCE_MS {
        return Check::passed("clock", format!("within {} s of Kite's clock", secs.max(1)));
    }
    let direction = if skew_ms > 0 { "ahead of" } else { "behind" };
    Check::failed(
        "clock",
        format!(
            "this host's clock is {secs} s {direction} Kite's: turn on time sync \
             (`timedatectl set-ntp true`)"
        ),
    )
}

/// Each target's health as a phrase, and whether any is failing.
fn describe(targets: &[(String, Health)]) -> (bool, String) {
    let failing = targets.iter().any(|(_, h)| matches!(h, Health::Failing(_)));
    let phrases: Vec<String> = targets
        .iter()
        .map(|(name, health)| match health {
            Health::NothingDue => format!("{name}: nothing sent yet"),
            Health::Sending { .. } => format!("{name}: sending"),
            Health::Delivered => format!("{name}: last delivery succeeded"),
            Health::Failing(error) => format!("{name}: last delivery failed ({error})"),
        })
        .collect();
    (failing, phrases.join(", "))
}

/// The sinks report their own state (`Session::set_sink`): ok once a sink holds the current
/// token state, failing with the reason until it does.
fn sinks_check(session: &Session) -> Check {
    let targets: Vec<(String, Health)> = session
        .sinks()
        .into_iter()
        .map(|sink| {
            let health = match sink.error {
                Some(error) if !sink.ok => Health::Failing(error),
                _ => Health::Delivered,
            };
            (sink.name, health)
        })
        .collect();
    if targets.is_empty() {
        return Check::passed("sinks", "none configured");
    }
    match describe(&targets) {
        (false, detail) => Check::passed("sinks", detail),
        (true, detail) => Check::failed(
            "sinks",
            format!("{detail}: check that the sink answers and its [sinks] settings"),
        ),
    }
}

fn push_check(session: &Session) -> Check {
    let config = session.config();
    let names = crate::notify::push::Channel::names(&config.push);
    if names.is_empty() {
        return Check::passed("push", "none configured");
    }
    let health = session.push_health();
    let targets: Vec<(String, Health)> = names
        .iter()
        .map(|name| (name.to_string(), health.of(name)))
        .collect();
    match describe(&targets) {
        (false, detail) => Check::passed("push", detail),
        (true, detail) => Check::failed(
            "push",
            format!("{detail}: fix the channel's [push] settings, then run `kitectl push-test`"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn probe(kite_time: Option<&str>) -> Probe {
        Probe {
            outcome: Err(KiteError::Token("no token".into())),
            kite_time: kite_time.map(|t| t.parse().unwrap()),
            elapsed: Duration::from_millis(30),
        }
    }

    #[test]
    fn the_clock_check_allows_two_seconds() {
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let fine = clock_check(
            &probe(Some("2026-11-23T03:20:00Z")),
            at("2026-11-23T03:20:01Z"),
        );
        assert!(fine.ok, "{fine:?}");
        let ahead = clock_check(
            &probe(Some("2026-11-23T03:20:00Z")),
            at("2026-11-23T03:20:05.5Z"),
        );
        assert!(!ahead.ok);
        assert!(
            ahead.detail.contains("5 s ahead of Kite's"),
            "{}",
            ahead.detail
        );
        let behind = clock_check(
            &probe(Some("2026-11-23T03:20:10Z")),
            at("2026-11-23T03:20:00Z"),
        );
        assert!(behind.detail.contains("behind Kite's"), "{}", behind.detail);
        assert!(!clock_check(&probe(None), at("2026-11-23T03:20:00Z")).ok);
    }

    #[test]
    fn kite_answered_whatever_it_thought_of_the_token() {
        assert!(kite_check(&probe(None)).ok);
        let mut down = probe(None);
        down.outcome = Err(KiteError::Timeout(Duration::from_secs(7)));
        assert!(!kite_check(&down).ok);
    }
}
