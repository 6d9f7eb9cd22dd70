//! What kited accepts from Kite's answers before it stores or shows any of them.
//!
//! A token with a space, a newline or a NUL in it would break every program that puts it in a
//! header or an env file; a user name with control characters could rewrite a terminal line or
//! inject a line into the env file; a `login_time` far from now would give a token a lifetime it
//! does not have. Such answers are refused (nothing stored) or, for display text, cleaned.

use crate::kite::display_text::clean_text;
use crate::kite::{KiteError, SessionData};
use chrono::{DateTime, Utc};

/// Longest access or refresh token accepted; Kite's are 32 characters.
const MAX_TOKEN_LEN: usize = 512;
/// How far ahead of kited's clock a `login_time` may be: clocks drift, a day is plenty.
const MAX_AHEAD: chrono::Duration = chrono::Duration::days(1);
/// How far back a `login_time` may be: an old session is stored as expired, but one from years
/// ago is not a login that just happened.
const MAX_BEHIND: chrono::Duration = chrono::Duration::days(3 * 365);

/// A session answer with its tokens checked and its text cleaned; refused when the access
/// token, the refresh token or the user id is unusable.
pub fn checked_session(mut data: SessionData) -> Result<SessionData, KiteError> {
    check_token("access_token", data.access_token.expose())?;
    if let Some(refresh) = data.refresh_token.as_ref().filter(|t| !t.is_empty()) {
        check_token("refresh_token", refresh.expose())?;
    }
    let profile = &mut data.profile;
    for text in [
        &mut profile.user_id,
        &mut profile.user_name,
        &mut profile.user_shortname,
        &mut profile.email,
        &mut profile.user_type,
        &mut profile.broker,
    ] {
        *text = clean_text(text);
    }
    for list in [
        &mut profile.exchanges,
        &mut profile.products,
        &mut profile.order_types,
    ] {
        for item in list.iter_mut() {
            *item = clean_text(item);
        }
    }
    if profile.user_id.is_empty() {
        return Err(KiteError::Unacceptable("the user_id is empty".into()));
    }
    Ok(data)
}

/// A token (`what` names it in the error): non-empty printable ASCII without spaces.
pub fn check_token(what: &str, token: &str) -> Result<(), KiteError> {
    let refuse = |why: &str| Err(KiteError::Unacceptable(format!("the {what} {why}")));
    if token.is_empty() {
        return refuse("is empty");
    }
    if token.len() > MAX_TOKEN_LEN {
        return refuse(&format!("is longer than {MAX_TOKEN_LEN} characters"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse("contains spaces, control characters or non-ASCII characters");
    }
    Ok(())
}

/// A login time within a day ahead of `now` and a few years behind it.
pub fn check_login_time(login: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), KiteError> {
    if login > now + MAX_AHEAD {
        return Err(KiteError::Unacceptable(format!(
            "the login_time {} is more than a day ahead of this machine's clock",
            login.to_rfc3339()
        )));
    }
    if login < now - MAX_BEHIND {
        return Err(KiteError::Unacceptable(format!(
            "the login_time {} is years in the past",
            login.to_rfc3339()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(check_token("access_token", "AbC123xyz").is_ok());
        for bad in [
            "",
            "a b",
            "a\nb",
            "a\0b",
            "a\u{1b}[31m",
            "ä",
            &"x".repeat(600),
        ] {
            assert!(check_token("access_token", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn login_times() {
        let now = Utc::now();
        assert!(check_login_time(now, now).is_ok());
        assert!(check_login_time(now - chrono::Duration::days(300), now).is_ok());
        assert!(check_login_time(now + chrono::Duration::days(2), now).is_err());
        assert!(check_login_time(now - chrono::Duration::days(4 * 365), now).is_err());
    }
}
