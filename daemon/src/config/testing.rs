//! Knobs that exist only for tests, read from the environment with the rest of the
//! configuration.

use crate::config::env::Env;
use crate::config::error::ConfigError;
use chrono::{DateTime, FixedOffset};
use std::time::Duration;

/// Knobs that exist only so tests need not wait for 06:00 or for slow timeouts. They come from
/// the environment alone, are read with the rest of the configuration, and are logged when set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Testing {
    /// `KITED_FAKE_NOW` (RFC 3339): the clock reads this when kited starts and runs on from it.
    pub fake_now: Option<DateTime<FixedOffset>>,
    /// `KITED_COMMAND_TIMEOUT_MS`: replaces the time `notify.command` may run.
    pub command_timeout: Option<Duration>,
}

/// The test-only knobs (see [`Testing`]); a value that does not parse is an error like any other.
pub(super) fn resolve_testing(env: &Env) -> Result<Testing, ConfigError> {
    let fake_now = env("KITED_FAKE_NOW")
        .map(|text| {
            DateTime::parse_from_rfc3339(text.trim()).map_err(|_| ConfigError::Invalid {
                key: "KITED_FAKE_NOW",
                message: format!("{text:?} is not an RFC 3339 time"),
            })
        })
        .transpose()?;
    let command_timeout = env("KITED_COMMAND_TIMEOUT_MS")
        .map(|text| match text.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(ConfigError::Invalid {
                key: "KITED_COMMAND_TIMEOUT_MS",
                message: format!("{text:?} is not a positive number of milliseconds"),
            }),
        })
        .transpose()?;
    Ok(Testing {
        fake_now,
        command_timeout,
    })
}
