//! Pure expiry arithmetic around the daily cutoff in Asia/Kolkata; "now" is always passed in.

use chrono::{
    DateTime, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SubsecRound, TimeZone,
    Utc,
};
use chrono_tz::Tz;
use kite_proto::TokenState;

/// Kite's sessions are flushed on the Indian market's calendar, whatever the host's zone.
pub const IST: Tz = chrono_tz::Asia::Kolkata;

/// Kite's default cutoff: tokens die at 06:00 IST ("regulatory requirement").
pub fn default_cutoff() -> NaiveTime {
    NaiveTime::from_hms_opt(6, 0, 0).expect("06:00 is a time")
}

/// Parses Kite's `login_time` (`YYYY-MM-DD HH:MM:SS`, IST, no zone). RFC 3339 is accepted too.
pub fn parse_login_time(text: &str) -> Option<DateTime<Tz>> {
    if let Ok(naive) = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S") {
        return IST.from_local_datetime(&naive).single();
    }
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&IST))
}

/// A time as kited's wire answers and events carry it: RFC 3339, seconds precision, with the
/// time's own offset (IST for every time kited makes): `2026-11-24T06:00:00+05:30`.
pub fn rfc3339<Z: TimeZone>(time: DateTime<Z>) -> String
where
    Z::Offset: std::fmt::Display,
{
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// `time` as the token record keeps it: the IST offset, whole seconds.
pub fn stamp(time: DateTime<Tz>) -> DateTime<FixedOffset> {
    time.with_timezone(&IST).fixed_offset().trunc_subsecs(0)
}

/// The instant `now` in IST.
pub fn ist(now: DateTime<Utc>) -> DateTime<Tz> {
    now.with_timezone(&IST)
}

/// The first `cutoff` (IST wall time) strictly after `login_time`.
pub fn expires_at(login_time: DateTime<Tz>, cutoff: NaiveTime) -> DateTime<Tz> {
    let local = login_time.with_timezone(&IST);
    let same_day = cutoff_on(local.date_naive(), cutoff);
    if same_day > local {
        same_day
    } else {
        cutoff_on(local.date_naive() + Duration::days(1), cutoff)
    }
}

/// `cutoff` on `date` in IST (IST has no DST, so this is always one instant).
pub fn cutoff_on(date: NaiveDate, cutoff: NaiveTime) -> DateTime<Tz> {
    IST.from_local_datetime(&date.and_time(cutoff))
        .single()
        .expect("Asia/Kolkata has no gaps or folds")
}

/// The token's state at `now`. `warn_window` is the earliest warning before expiry.
pub fn state_at(
    now: DateTime<Utc>,
    expires_at: DateTime<FixedOffset>,
    invalidated: bool,
    warn_window: Duration,
) -> TokenState {
    if invalidated {
        TokenState::Invalidated
    } else if now >= expires_at {
        TokenState::Expired
    } else if now + warn_window >= expires_at {
        TokenState::Expiring
    } else {
        TokenState::Valid
    }
}

/// Whole seconds from `now` until `expires_at`, never negative.
pub fn seconds_left(now: DateTime<Utc>, expires_at: DateTime<FixedOffset>) -> i64 {
    (expires_at.with_timezone(&Utc) - now).num_seconds().max(0)
}

/// Where "now" comes from: the wall clock in the daemon, a fixed or moved instant in tests.
pub type Now = std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The real wall clock.
pub fn system_now() -> Now {
    std::sync::Arc::new(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Tz> {
        parse_login_time(text).unwrap()
    }

    #[test]
    fn expiry_table() {
        let cutoff = default_cutoff();
        let table = [
            ("2026-11-23 00:00:00", "2026-11-23T06:00:00+05:30"),
            ("2026-11-23 05:59:59", "2026-11-23T06:00:00+05:30"),
            ("2026-11-23 06:00:00", "2026-11-24T06:00:00+05:30"),
            ("2026-11-23 06:00:01", "2026-11-24T06:00:00+05:30"),
            ("2026-11-23 09:15:00", "2026-11-24T06:00:00+05:30"),
            ("2026-11-23 23:59:59", "2026-11-24T06:00:00+05:30"),
            ("2026-11-30 23:59:00", "2026-12-01T06:00:00+05:30"),
            ("2026-12-31 23:59:00", "2027-01-01T06:00:00+05:30"),
            ("2028-02-28 10:00:00", "2028-02-29T06:00:00+05:30"),
            ("2027-02-28 10:00:00", "2027-03-01T06:00:00+05:30"),
        ];
        for (login, expected) in table {
            assert_eq!(rfc3339(expires_at(at(login), cutoff)), expected, "{login}");
        }
    }

    #[test]
    fn custom_cutoff() {
        let cutoff = NaiveTime::from_hms_opt(7, 30, 0).unwrap();
        assert_eq!(
            rfc3339(expires_at(at("2026-11-23 07:00:00"), cutoff)),
            "2026-11-23T07:30:00+05:30"
        );
    }

    #[test]
    fn login_time_in_other_forms() {
        assert_eq!(
            rfc3339(at("2026-11-23T01:00:00Z")),
            "2026-11-23T06:30:00+05:30"
        );
        assert!(parse_login_time("yesterday").is_none());
    }

    #[test]
    fn stamps_are_ist_to_the_second() {
        let utc = DateTime::parse_from_rfc3339("2026-11-23T03:30:00.987654321Z")
            .unwrap()
            .with_timezone(&Utc);
        let kept = stamp(ist(utc));
        assert_eq!(kept.to_rfc3339(), "2026-11-23T09:00:00+05:30");
        assert_eq!(rfc3339(kept), "2026-11-23T09:00:00+05:30");
        assert_eq!(
            serde_json::to_string(&kept).unwrap(),
            "\"2026-11-23T09:00:00+05:30\""
        );
    }

    #[test]
    fn state_follows_the_wall_clock() {
        let expiry = stamp(at("2026-11-24 06:00:00"));
        let warn = Duration::minutes(60);
        let utc = |s: &str| at(s).with_timezone(&Utc);
        let table = [
            ("2026-11-23 09:00:00", TokenState::Valid),
            ("2026-11-24 04:59:59", TokenState::Valid),
            ("2026-11-24 05:00:00", TokenState::Expiring),
            ("2026-11-24 05:59:59", TokenState::Expiring),
            ("2026-11-24 06:00:00", TokenState::Expired),
            ("2026-11-25 12:00:00", TokenState::Expired),
        ];
        for (now, state) in table {
            assert_eq!(state_at(utc(now), expiry, false, warn), state, "{now}");
        }
        assert_eq!(
            state_at(utc("2026-11-23 09:00:00"), expiry, true, warn),
            TokenState::Invalidated
        );
        assert_eq!(seconds_left(utc("2026-11-24 05:59:00"), expiry), 60);
        assert_eq!(seconds_left(utc("2026-11-24 07:00:00"), expiry), 0);
    }
}
