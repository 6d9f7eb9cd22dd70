//! The `[readiness]` table: when the morning check runs, the egress IPs registered with Kite,
//! where to learn this host's egress IP, and how often the login reminder repeats.

use crate::config::error::ConfigError;
use chrono::NaiveTime;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// Twenty-five minutes before the market opens: time to log in or fix a network before 09:15.
pub const DEFAULT_AT: &str = "08:50";
/// A plain-text echo of the caller's address, run by a long-lived public service.
pub const DEFAULT_IP_ECHO_URL: &str = "https://api.ipify.org";
/// A reminder a quarter of an hour: insistent enough to be seen, rare enough not to be noise.
pub const DEFAULT_REMINDER_EVERY: Duration = Duration::from_secs(15 * 60);
/// SEBI lets an app register at most two static IPs for orders.
pub const MAX_STATIC_IPS: usize = 2;

/// The file's `[readiness]` table.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileReadiness {
    pub at: Option<String>,
    #[serde(default)]
    pub static_ips: Vec<String>,
    pub ip_echo_url: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub reminder_every: Option<Duration>,
}

/// The resolved `[readiness]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// IST, trading days only.
    pub at: NaiveTime,
    /// Empty: the `ip` check is not run.
    pub static_ips: Vec<IpAddr>,
    pub ip_echo_url: url::Url,
    /// Zero: the reminder is sent once.
    pub reminder_every: Duration,
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness::resolve(&FileReadiness::default()).expect("the defaults are valid")
    }
}

impl FileReadiness {
    /// The resolved settings in the file's shape, every key filled, for `check-config`.
    pub fn view(readiness: &Readiness) -> FileReadiness {
        FileReadiness {
            at: Some(readiness.at.format("%H:%M").to_string()),
            static_ips: readiness
                .static_ips
                .iter()
                .map(ToString::to_string)
                .collect(),
            ip_echo_url: Some(readiness.ip_echo_url.to_string()),
            reminder_every: Some(readiness.reminder_every),
        }
    }
}

impl Readiness {
    pub fn resolve(file: &FileReadiness) -> Result<Readiness, ConfigError> {
        let at_text = file.at.as_deref().unwrap_or(DEFAULT_AT);
        let at = NaiveTime::parse_from_str(at_text.trim(), "%H:%M").map_err(|_| {
            ConfigError::Invalid {
                key: "readiness.at",
                message: format!("{at_text:?} is not a time like \"08:50\""),
            }
        })?;
        let static_ips = file
            .static_ips
            .iter()
            .map(|text| {
                text.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| ConfigError::Invalid {
                        key: "readiness.static_ips",
                        message: format!("{text:?} is not an IP address like \"203.0.113.7\""),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let echo_text = file.ip_echo_url.as_deref().unwrap_or(DEFAULT_IP_ECHO_URL);
        let ip_echo_url = parse_echo_url(echo_text).map_err(|message| ConfigError::Invalid {
            key: "readiness.ip_echo_url",
            message,
        })?;
        Ok(Readiness {
            at,
            static_ips,
            ip_echo_url,
            reminder_every: file.reminder_every.unwrap_or(DEFAULT_REMINDER_EVERY),
        })
    }

    /// What is allowed but probably wrong, for the log at start and `check-config`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.static_ips.len() > MAX_STATIC_IPS {
            warnings.push(format!(
                "readiness.static_ips lists {} addresses; Kite accepts at most {MAX_STATIC_IPS} \
                 per app, so some of these cannot be registered",
                self.static_ips.len()
            ));
        }
        warnings
    }
}

/// An http(s) URL; plain http only to a loopback host (the answer decides whether orders work,
/// so it must not be open to anyone on the path).
fn parse_echo_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(format!(
            "{text:?} must use https (plain http is allowed only to a loopback host)"
        )),
        other => Err(format!("{text:?} has scheme {other:?}; use https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(file: FileReadiness) -> Result<Readiness, String> {
        Readiness::resolve(&file).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let r = Readiness::default();
        assert_eq!(r.at, NaiveTime::from_hms_opt(8, 50, 0).unwrap());
        assert!(r.static_ips.is_empty());
        assert_eq!(r.ip_echo_url.as_str(), "https://api.ipify.org/");
        assert_eq!(r.reminder_every, Duration::from_secs(900));
        assert!(r.warnings().is_empty());
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = resolve(FileReadiness {
            at: Some("8.50".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("readiness.at is invalid"), "{err}");
        let err = resolve(FileReadiness {
            static_ips: vec!["203.0.113.7".into(), "my-server".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("readiness.static_ips is invalid"), "{err}");
        assert!(err.contains("my-server"), "{err}");
        let err = resolve(FileReadiness {
            ip_echo_url: Some("http://ip.example.com".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.starts_with("readiness.ip_echo_url is invalid"), "{err}");
        for fine in [
            "http://127.0.0.1:9/",
            "http://localhost:8/ip",
            "http://[::1]:7/",
        ] {
            resolve(FileReadiness {
                ip_echo_url: Some(fine.into()),
                ..Default::default()
            })
            .unwrap();
        }
    }

    #[test]
    fn more_than_two_ips_is_a_warning() {
        let r = resolve(FileReadiness {
            static_ips: vec!["203.0.113.7".into(), "203.0.113.8".into(), "::1".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.static_ips.len(), 3);
        let warnings = r.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("at most 2"), "{warnings:?}");
    }
}
