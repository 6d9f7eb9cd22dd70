//! `kitectl status` for a person: the token's state, whose it is, until when, and what to do.

use crate::exit::{self};
use kite_proto::TokenStatus;

/// The human form of a status: a few aligned `label: value` lines.
pub fn render_status(s: &TokenStatus) -> String {
    let mut lines: Vec<(&str, String)> = Vec::with_capacity(7);
    let state = if s.configured {
        s.state.as_str().to_string()
    } else {
        format!("not configured ({})", s.state)
    };
    lines.push(("state", state));
    lines.push(("user", user_label(s).unwrap_or_else(|| "-".into())));
    if let Some(login_time) = &s.login_time {
        lines.push(("logged in", login_time.clone()));
    }
    let expires = match (&s.expires_at, s.seconds_left) {
        (Some(at), Some(left)) if left > 0 => {
            format!("{at} ({} left)", format_duration(left as u64))
        }
        (Some(at), Some(_)) => format!("{at} (expired)"),
        (Some(at), None) => at.clone(),
        (None, _) => "-".into(),
    };
    lines.push(("expires at", expires));
    if let Some(reason) = &s.invalidated_reason {
        lines.push(("reason", reason.clone()));
    }
    if let Some(why) = &s.store_error {
        lines.push(("store", format!("failing: {why}")));
    }
    if let Some(why) = &s.env_file_error {
        lines.push(("env file", format!("failing: {why}")));
    }
    for sink in &s.sinks {
        let health = match (&sink.ok, &sink.error) {
            (true, _) => "ok".to_string(),
            (false, Some(why)) => format!("failing: {why}"),
            (false, None) => "failing".to_string(),
        };
        lines.push(("sink", format!("{}: {health}", sink.name)));
    }
    lines.push(("profile", s.profile.clone()));
    if !s.hint.is_empty() {
        lines.push(("hint", s.hint.clone()));
    }
    let mut out = String::with_capacity(256);
    for (label, value) in lines {
        let label = format!("{label}:");
        out.push_str(&format!("{label:<12}{}\n", exit::one_line(&value)));
    }
    out
}

/// "Name (ID)", or whichever of the two is known.
pub fn user_label(s: &TokenStatus) -> Option<String> {
    match (&s.user_name, &s.user_id) {
        (Some(name), Some(id)) => Some(format!("{name} ({id})")),
        (Some(one), None) | (None, Some(one)) => Some(one.clone()),
        (None, None) => None,
    }
}

/// A span for people: "1d 4h", "3h 12m", "12m", "45s" (rounded down).
pub fn format_duration(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m")
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kite_proto::TokenState;

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(60), "1m");
        assert_eq!(format_duration(12 * 60 + 59), "12m");
        assert_eq!(format_duration(3 * 3600 + 12 * 60 + 30), "3h 12m");
        assert_eq!(format_duration(3600), "1h 0m");
        assert_eq!(format_duration(86_400 + 4 * 3600 + 5), "1d 4h");
    }

    pub(crate) fn sample_status() -> TokenStatus {
        TokenStatus {
            configured: true,
            state: TokenState::Valid,
            valid: true,
            needs_refresh: false,
            user_id: Some("AB1234".into()),
            user_name: Some("Ada Lovelace".into()),
            login_time: Some("2026-11-23T09:00:00+05:30".into()),
            expires_at: Some("2026-11-24T06:00:00+05:30".into()),
            seconds_left: Some(3 * 3600 + 12 * 60),
            profile: "default".into(),
            api_key: Some("key".into()),
            invalidated_reason: None,
            store_error: None,
            env_file_error: None,
            pinned_user_id: None,
            sinks: vec![],
            hint: "Nothing to do.".into(),
        }
    }

    #[test]
    fn human_status() {
        let text = render_status(&sample_status());
        assert_eq!(
            text,
            "state:      valid\n\
             user:       Ada Lovelace (AB1234)\n\
             logged in:  2026-11-23T09:00:00+05:30\n\
             expires at: 2026-11-24T06:00:00+05:30 (3h 12m left)\n\
             profile:    default\n\
             hint:       Nothing to do.\n"
        );
        let mut none = sample_status();
        none.configured = false;
        none.state = TokenState::None;
        none.user_id = None;
        none.user_name = None;
        none.login_time = None;
        none.expires_at = None;
        none.seconds_left = None;
        let text = render_status(&none);
        assert!(
            text.starts_with("state:      not configured (none)\nuser:       -\n"),
            "{text}"
        );
        assert!(text.contains("expires at: -\n"), "{text}");
        let mut expired = sample_status();
        expired.state = TokenState::Expired;
        expired.seconds_left = Some(0);
        assert!(render_status(&expired).contains("06:00:00+05:30 (expired)\n"));
    }
}
