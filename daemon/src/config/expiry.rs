//! `[expiry]`: the daily cutoff, the warnings before it, the pre-market reminder (a cron
//! expression parsed when the configuration is read), the holidays and the profile check.

use crate::config::error::ConfigError;
use crate::config::file::FileExpiry;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use std::time::Duration;

/// Weekdays at 08:45 IST: half an hour before the pre-open session, time to log in calmly.
pub const DEFAULT_REMINDER: &str = "0 45 8 * * Mon-Fri";
/// The warnings before the cutoff: an hour ahead (time to plan) and a quarter of an hour (last call).
const DEFAULT_WARN_BEFORE: [Duration; 2] =
    [Duration::from_secs(60 * 60), Duration::from_secs(15 * 60)];
/// A profile call every half hour catches a token Kite killed early without hammering Kite.
pub const DEFAULT_VERIFY_EVERY: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub cutoff: NaiveTime,
    /// Sorted longest first: the first is the "expiring" window.
    pub warn_before: Vec<Duration>,
    pub reminder: Reminder,
    pub holidays: Vec<NaiveDate>,
    pub verify_every: Duration,
}

/// `expiry.reminder`: a cron expression (`croner` syntax, seconds field optional), in IST.
/// Parsed when the configuration is read, so a typo is a configuration error, never a silent
/// "no reminders".
#[derive(Clone, PartialEq)]
pub struct Reminder {
    /// As written, for `check-config` and logs.
    expression: String,
    cron: croner::Cron,
}

impl Reminder {
    pub fn parse(expression: &str) -> Result<Reminder, String> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .build()
            .parse(expression)
            .map_err(|e| format!("{expression:?} is not a cron expression ({e})"))?;
        Ok(Reminder {
            expression: expression.to_string(),
            cron,
        })
    }

    /// The next time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&crate::clock::ist(after), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    pub fn as_str(&self) -> &str {
        &self.expression
    }
}

/// The expression alone: the parsed form is kilobytes of bit fields.
impl std::fmt::Debug for Reminder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Reminder").field(&self.expression).finish()
    }
}

pub(super) fn resolve_expiry(file: &FileExpiry) -> Result<Expiry, ConfigError> {
    let cutoff = match &file.cutoff {
        Some(text) => {
            NaiveTime::parse_from_str(text, "%H:%M").map_err(|_| ConfigError::Invalid {
                key: "expiry.cutoff",
                message: format!("{text:?} is not a time like \"06:00\""),
            })?
        }
        None => crate::clock::default_cutoff(),
    };
    let mut warn_before = match &file.warn_before {
        Some(list) => list.iter().map(|d| **d).collect(),
        None => DEFAULT_WARN_BEFORE.to_vec(),
    };
    warn_before.sort_unstable_by(|a, b| b.cmp(a));
    warn_before.dedup();
    let reminder = Reminder::parse(file.reminder.as_deref().unwrap_or(DEFAULT_REMINDER)).map_err(
        |message| ConfigError::Invalid {
            key: "expiry.reminder",
            message,
        },
    )?;
    let holidays = file
        .holidays
        .iter()
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| ConfigError::Invalid {
                key: "expiry.holidays",
                message: format!("{text:?} is not a date like \"2026-12-25\""),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let verify_every = file.verify_every.unwrap_or(DEFAULT_VERIFY_EVERY);
    if verify_every.is_zero() {
        return Err(ConfigError::Invalid {
            key: "expiry.verify_every",
            message: "must be longer than 0s".into(),
        });
    }
    Ok(Expiry {
        cutoff,
        warn_before,
        reminder,
        holidays,
        verify_every,
    })
}
