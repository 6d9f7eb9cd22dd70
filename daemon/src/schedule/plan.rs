//! What the schedule does and when, decided purely: given now, the token and the settings,
//! [`plan`] says what is due and when the next thing is. No clock, no I/O, so every case is a
//! unit test; `schedule` only sleeps, asks the plan and acts.

use crate::clock;
use crate::config::{Expiry, Readiness};
use crate::token::TokenRecord;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use std::collections::BTreeSet;

/// The Indian equity market opens at 09:15 IST: reminders are for before then.
pub fn market_open() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 15, 0).expect("09:15 is a time")
}

/// How far ahead to look for a trading day: a year of listed holidays is the most anyone lists.
const MAX_DAYS_AHEAD: u32 = 400;

/// Something the schedule does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `token_expiring` for the warning window of this many seconds.
    Warn { window_secs: u64 },
    /// `token_expired`.
    Expire,
    /// Renew with the refresh token.
    Renew,
    /// The periodic `GET /user/profile`.
    Verify,
    /// The pre-market `login_required` reminder, or one of its repeats.
    Remind,
    /// The morning readiness check and its `market_ready` / `market_not_ready` event.
    CheckReadiness,
}

/// What has already been done for the current token, so nothing fires twice.
#[derive(Debug, Default, Clone)]
pub struct Done {
    /// Which token this is about: its `expires_at` and a short token hint.
    pub token_key: Option<(DateTime<FixedOffset>, String)>,
    pub warned: BTreeSet<u64>,
    pub expired: bool,
    pub last_verify: Option<DateTime<Utc>>,
    pub next_renew: Option<DateTime<Utc>>,
    /// Kite refused the refresh token: no more renewals for this token.
    pub renew_refused: bool,
    pub last_remind: Option<DateTime<Utc>>,
}

impl Done {
    /// Forgets per-token progress when the token changed.
    pub fn follow(&mut self, token: Option<&TokenRecord>, now: DateTime<Utc>) {
        let key = token.map(|t| (t.expires_at, t.access_token.hint()));
        if key != self.token_key {
            let last_remind = self.last_remind;
            *self = Done {
                token_key: key,
                last_remind,
                // A new token was just issued by Kite; one read from disk at start is checked
                // one `verify_every` later like any other.
                last_verify: token.filter(|t| t.invalidated.is_none()).map(|_| now),
                ..Done::default()
            };
        }
    }
}

/// The next planned action and when, plus whatever is due now.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub due: Vec<Action>,
    pub next: Option<DateTime<Utc>>,
}

/// Decides what is due at `now` and when to wake next. `reminder_next` is the next reminder
/// time strictly after the last one that fired; `readiness_next` the next readiness check's
/// (see [`next_readiness`]), `None` when there is none to run.
pub fn plan(
    now: DateTime<Utc>,
    token: Option<&TokenRecord>,
    expiry: &Expiry,
    done: &Done,
    reminder_next: Option<DateTime<Utc>>,
    readiness: &Readiness,
    readiness_next: Option<DateTime<Utc>>,
) -> Plan {
    let mut due = Vec::new();
    let mut next: Option<DateTime<Utc>> = None;
    let mut at = |when: DateTime<Utc>, action: Action, due: &mut Vec<Action>| {
        if when <= now {
            due.push(action);
        } else {
            next = Some(next.map_or(when, |n| n.min(when)));
        }
    };
    let live = token.filter(|t| t.invalidated.is_none());
    if let Some(token) = live {
        let expires_at = token.expires_at.with_timezone(&Utc);
        let renewable = token.refresh_token.is_some();
        if now < expires_at {
            if !renewable {
                // Only the narrowest warning whose time has come is sent: after a suspend,
                // one message, not three (acting on it marks the wider ones done too).
                let mut narrowest_due: Option<u64> = None;
                for window in &expiry.warn_before {
                    let secs = window.as_secs();
                    if done.warned.contains(&secs) {
                        continue;
                    }
                    let when = expires_at - chrono::Duration::seconds(secs as i64);
                    if when <= now {
                        narrowest_due = Some(narrowest_due.map_or(secs, |n| n.min(secs)));
                    } else {
                        at(when, Action::Warn { window_secs: secs }, &mut due);
                    }
                }
                if let Some(secs) = narrowest_due {
                    due.push(Action::Warn { window_secs: secs });
                }
            }
            let verify_at = done.last_verify.map_or(now, |last| {
                last + chrono::Duration::from_std(expiry.verify_every).unwrap_or_default()
            });
            at(verify_at.min(expires_at), Action::Verify, &mut due);
        }
        if renewable && !done.renew_refused {
            at(
                done.next_renew.unwrap_or(expires_at),
                Action::Renew,
                &mut due,
            );
        } else if !done.expired && !renewable {
            at(expires_at, Action::Expire, &mut due);
        }
    }
    if let Some(when) = reminder_next {
        at(when, Action::Remind, &mut due);
    }
    let usable = live.is_some_and(|t| now < t.expires_at);
    if let Some(when) = next_repeat(now, done.last_remind, usable, readiness, expiry) {
        at(when, Action::Remind, &mut due);
    }
    if let Some(when) = readiness_next {
        at(when, Action::CheckReadiness, &mut due);
    }
    due.sort();
    due.dedup();
    Plan { due, next }
}

/// When the login reminder comes again: `readiness.reminder_every` after the last one, while
/// no usable token exists, on a trading day, and only before that day's market open (a repeat
/// planned for 09:15 or later, or a wake after it, sends nothing). `None`: no repeat.
pub fn next_repeat(
    now: DateTime<Utc>,
    last_remind: Option<DateTime<Utc>>,
    usable_token: bool,
    readiness: &Readiness,
    expiry: &Expiry,
) -> Option<DateTime<Utc>> {
    let last = last_remind?;
    if usable_token || readiness.reminder_every.is_zero() {
        return None;
    }
    let day = clock::ist(last).date_naive();
    if !is_trading_day(day, expiry) {
        return None;
    }
    let open = ist_at(day, market_open())?;
    let again = last + chrono::Duration::from_std(readiness.reminder_every).ok()?;
    (again < open && now < open).then_some(again)
}

/// The next readiness check strictly after `after`: `readiness.at` IST on a trading day.
pub fn next_readiness(
    after: DateTime<Utc>,
    readiness: &Readiness,
    expiry: &Expiry,
) -> Option<DateTime<Utc>> {
    let mut day = clock::ist(after).date_naive();
    for _ in 0..MAX_DAYS_AHEAD {
        if is_trading_day(day, expiry) {
            let when = ist_at(day, readiness.at)?;
            if when > after {
                return Some(when);
            }
        }
        day = day.succ_opt()?;
    }
    None
}

/// `time` IST on `day`, as UTC (IST has no daylight saving: always exactly one such instant).
fn ist_at(day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    clock::IST
        .from_local_datetime(&day.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether `date` (IST) is a trading day: not a weekend, not in `expiry.holidays`.
pub fn is_trading_day(date: chrono::NaiveDate, expiry: &Expiry) -> bool {
    !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !expiry.holidays.contains(&date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expiry::Reminder;
    use crate::token::Secret;
    use std::time::Duration;

    fn expiry() -> Expiry {
        Expiry {
            cutoff: clock::default_cutoff(),
            warn_before: vec![Duration::from_secs(3600), Duration::from_secs(900)],
            reminder: Reminder::parse(crate::config::expiry::DEFAULT_REMINDER).unwrap(),
            holidays: vec!["2026-12-25".parse().unwrap()],
            verify_every: Duration::from_secs(1800),
        }
    }

    /// The plan at `now` (naive IST) with no reminder due and the default `[readiness]`.
    fn plan(now: &str, token: Option<&TokenRecord>, expiry: &Expiry, done: &Done) -> Plan {
        super::plan(
            utc(now),
            token,
            expiry,
            done,
            None,
            &Readiness::default(),
            None,
        )
    }

    /// The plan at `now` (naive IST) with `readiness`, no reminder and no readiness check due.
    fn reminding(now: &str, token: Option<&TokenRecord>, done: &Done, r: &Readiness) -> Plan {
        super::plan(utc(now), token, &expiry(), done, None, r, None)
    }

    /// A plan with nothing due and nothing to wake for.
    fn nothing() -> Plan {
        Plan {
            due: vec![],
            next: None,
        }
    }

    fn readiness(every_secs: u64) -> Readiness {
        Readiness {
            reminder_every: Duration::from_secs(every_secs),
            ..Readiness::default()
        }
    }

    fn token(expires_at: &str) -> TokenRecord {
        TokenRecord::sample("tok", expires_at)
    }

    fn utc(ist: &str) -> DateTime<Utc> {
        clock::parse_login_time(ist).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn warnings_then_expiry() {
        let t = token("2026-11-24T06:00:00+05:30");
        let mut done = Done::default();
        done.follow(Some(&t), utc("2026-11-23 09:00:00"));
        let p = plan("2026-11-23 09:00:00", Some(&t), &expiry(), &done);
        assert!(p.due.is_empty(), "{p:?}");
        // The first wake is the verify in 30 minutes.
        assert_eq!(p.next, Some(utc("2026-11-23 09:30:00")));
        // Just after 05:00 the 60-minute warning is due.
        done.last_verify = Some(utc("2026-11-24 04:59:00"));
        let p = plan("2026-11-24 05:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p.due, vec![Action::Warn { window_secs: 3600 }]);
        done.warned.insert(3600);
        let p = plan("2026-11-24 05:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p.next, Some(utc("2026-11-24 05:29:00")));
        // Woken after a suspend at 05:50: one warning (the 15-minute one), not two.
        let mut fresh = Done::default();
        fresh.follow(Some(&t), utc("2026-11-24 05:50:00"));
        let p = plan("2026-11-24 05:50:00", Some(&t), &expiry(), &fresh);
        assert_eq!(p.due, vec![Action::Warn { window_secs: 900 }]);
        // Acting on it marks the wider window done too: no second message after the suspend.
        fresh.warned.extend([900, 3600]);
        let p = plan("2026-11-24 05:50:00", Some(&t), &expiry(), &fresh);
        assert!(p.due.is_empty(), "{p:?}");
        // The narrowest due window wins whatever order the windows are listed in.
        let mut unsorted = expiry();
        unsorted.warn_before.reverse();
        let mut fresh = Done::default();
        fresh.follow(Some(&t), utc("2026-11-24 05:50:00"));
        let p = plan("2026-11-24 05:50:00", Some(&t), &unsorted, &fresh);
        assert_eq!(p.due, vec![Action::Warn { window_secs: 900 }]);
        // At 06:00 the expiry.
        let p = plan("2026-11-24 06:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p.due, vec![Action::Expire]);
        done.expired = true;
        let p = plan("2026-11-24 06:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p, nothing());
    }

    #[test]
    fn invalidated_tokens_plan_nothing() {
        let mut t = token("2026-11-24T06:00:00+05:30");
        t.invalidated = Some("x".into());
        let p = plan("2026-11-23 09:00:00", Some(&t), &expiry(), &Done::default());
        assert_eq!(p, nothing());
    }

    #[test]
    fn renewable_tokens_renew_at_the_cutoff_instead_of_warning() {
        let mut t = token("2026-11-24T06:00:00+05:30");
        t.refresh_token = Some(Secret::new("r"));
        let mut done = Done {
            last_verify: Some(utc("2026-11-24 05:40:00")),
            ..Done::default()
        };
        let p = plan("2026-11-24 05:50:00", Some(&t), &expiry(), &done);
        assert!(p.due.is_empty(), "{p:?}");
        assert_eq!(p.next, Some(utc("2026-11-24 06:00:00")));
        let p = plan("2026-11-24 06:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p.due, vec![Action::Renew]);
        // After a failed attempt, the retry time; after a refusal, nothing more.
        done.next_renew = Some(utc("2026-11-24 06:01:00"));
        let p = plan("2026-11-24 06:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p.next, Some(utc("2026-11-24 06:01:00")));
        done.renew_refused = true;
        let p = plan("2026-11-24 06:00:00", Some(&t), &expiry(), &done);
        assert_eq!(p, nothing());
    }

    #[test]
    fn verify_repeats_and_stops_at_expiry() {
        let t = token("2026-11-24T06:00:00+05:30");
        let mut e = expiry();
        e.verify_every = Duration::from_secs(1);
        let mut done = Done::default();
        done.follow(Some(&t), utc("2026-11-23 09:00:00"));
        let p = plan("2026-11-23 09:00:00", Some(&t), &e, &done);
        assert_eq!(p.next, Some(utc("2026-11-23 09:00:01")));
        let p = plan("2026-11-23 09:00:01", Some(&t), &e, &done);
        assert_eq!(p.due, vec![Action::Verify]);
        done.last_verify = Some(utc("2026-11-23 09:00:01"));
        let p = plan("2026-11-23 09:00:01", Some(&t), &e, &done);
        assert_eq!(p.next, Some(utc("2026-11-23 09:00:02")));
        // The last check is at the cutoff, not after it.
        done.last_verify = Some(utc("2026-11-24 05:59:59"));
        let p = plan("2026-11-24 05:59:59", Some(&t), &e, &done);
        assert_eq!(p.next, Some(utc("2026-11-24 06:00:00")));
        done.expired = true;
        done.last_verify = Some(utc("2026-11-24 06:00:00"));
        let p = plan("2026-11-24 06:00:00", Some(&t), &e, &done);
        assert_eq!(p, nothing());
    }

    #[test]
    fn reminder_is_weekdays_at_0845_ist() {
        let friday_evening = utc("2026-11-27 18:00:00");
        assert_eq!(
            expiry().reminder.next_after(friday_evening),
            Some(utc("2026-11-30 08:45:00"))
        );
        assert!(is_trading_day("2026-11-30".parse().unwrap(), &expiry()));
        assert!(!is_trading_day("2026-11-29".parse().unwrap(), &expiry()));
        assert!(!is_trading_day("2026-12-25".parse().unwrap(), &expiry()));
    }

    #[test]
    fn readiness_runs_at_0850_on_trading_days_only() {
        let r = Readiness::default();
        let e = expiry();
        for (after, expected) in [
            // Monday morning before 08:50: today.
            ("2026-11-23 08:49:55", "2026-11-23 08:50:00"),
            // At 08:50 itself it has run: tomorrow's.
            ("2026-11-23 08:50:00", "2026-11-24 08:50:00"),
            // Friday after the check: Monday's (the weekend skipped).
            ("2026-11-27 09:00:00", "2026-11-30 08:50:00"),
            // Thursday 24 Dec: Friday 25 Dec is a holiday, so Monday 28 Dec.
            ("2026-12-24 09:00:00", "2026-12-28 08:50:00"),
        ] {
            assert_eq!(
                next_readiness(utc(after), &r, &e),
                Some(utc(expected)),
                "{after}"
            );
        }
    }

    #[test]
    fn the_plan_wakes_for_readiness_and_nothing_between() {
        let r = Readiness::default();
        let now = utc("2026-11-23 08:49:55");
        let next = next_readiness(now, &r, &expiry());
        let p = super::plan(now, None, &expiry(), &Done::default(), None, &r, next);
        assert_eq!(p.next, Some(utc("2026-11-23 08:50:00")));
        assert!(p.due.is_empty());
        let at = utc("2026-11-23 08:50:00");
        let p = super::plan(at, None, &expiry(), &Done::default(), None, &r, next);
        assert_eq!(p.due, vec![Action::CheckReadiness]);
    }

    #[test]
    fn reminders_repeat_until_market_open_while_no_token() {
        let r = readiness(15 * 60);
        let e = expiry();
        let remind =
            |now: &str, last: &str, usable| next_repeat(utc(now), Some(utc(last)), usable, &r, &e);
        // 08:45 → 09:00; 09:00 → none (09:15 is market open, too late for "before open").
        assert_eq!(
            remind("2026-11-23 08:45:00", "2026-11-23 08:45:00", false),
            Some(utc("2026-11-23 09:00:00"))
        );
        for (now, last, usable) in [
            ("2026-11-23 09:00:00", "2026-11-23 09:00:00", false),
            // A valid token stops it at once.
            ("2026-11-23 08:46:00", "2026-11-23 08:45:00", true),
            // Woken after market open (a suspend): no stale reminder.
            ("2026-11-23 10:00:00", "2026-11-23 08:45:00", false),
            // Not on a holiday.
            ("2026-12-25 08:45:00", "2026-12-25 08:45:00", false),
        ] {
            assert_eq!(remind(now, last, usable), None, "{now} after {last}");
        }
        // "0s" means once.
        assert_eq!(
            next_repeat(
                utc("2026-11-23 08:45:00"),
                Some(utc("2026-11-23 08:45:00")),
                false,
                &readiness(0),
                &e
            ),
            None
        );
        // Nothing reminded yet: nothing to repeat.
        assert_eq!(
            next_repeat(utc("2026-11-23 08:45:00"), None, false, &r, &e),
            None
        );
    }

    #[test]
    fn repeats_go_through_the_plan_and_stop_on_a_login() {
        let r = readiness(60);
        let done = Done {
            last_remind: Some(utc("2026-11-23 08:45:00")),
            ..Done::default()
        };
        let p = reminding("2026-11-23 08:45:00", None, &done, &r);
        assert_eq!(p.next, Some(utc("2026-11-23 08:46:00")));
        let p = reminding("2026-11-23 08:46:00", None, &done, &r);
        assert_eq!(p.due, vec![Action::Remind]);
        // With a valid token the repeat is gone from the plan (an invalidated one does not count).
        let t = token("2026-11-24T06:00:00+05:30");
        let mut logged_in = done.clone();
        logged_in.follow(Some(&t), utc("2026-11-23 08:45:30"));
        logged_in.last_verify = Some(utc("2026-11-23 08:45:30"));
        let p = reminding("2026-11-23 08:46:00", Some(&t), &logged_in, &r);
        assert!(!p.due.contains(&Action::Remind), "{p:?}");
        assert_eq!(p.next, Some(utc("2026-11-23 09:15:30")));
        let mut dead = t.clone();
        dead.invalidated = Some("Kite refused it".into());
        let p = reminding("2026-11-23 08:46:00", Some(&dead), &done, &r);
        assert_eq!(p.due, vec![Action::Remind]);
    }
}
