//! What a phone is told: one human sentence first, then what to do, and for events that call
//! for a login a fresh login link (only with `http.public_url`: a loopback link is useless on a
//! phone). Never a token or a secret.

use crate::session::Session;
use kite_proto::event::{short_time, until};
use kite_proto::{Event, EventKind};

/// ntfy priorities: 4 ("high") when a login is needed or near, 3 ("default") otherwise.
const URGENT: u8 = 4;
const NORMAL: u8 = 3;

/// One push message, the same for every channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The event it is about (`token_new`, …), or `test`.
    pub event: &'static str,
    /// A short headline (ntfy's `Title`); ASCII, since it travels in an HTTP header.
    pub title: String,
    /// The whole text: the sentence, then the next step.
    pub text: String,
    /// The login link for the "Log in" button.
    pub link: Option<String>,
    /// ntfy's `Priority` (1-5).
    pub priority: u8,
}

/// The message for `event`. A login link is issued (a fresh ticket) for the events that call
/// for a login now: the reminder, the expiry and an invalidation. A warning before the cutoff
/// gets none: a login before the cutoff yields a token that dies at the cutoff.
pub fn compose(event: &Event, session: &Session) -> Message {
    let config = session.config();
    let profile = if config.profile == kite_proto::socket_path::DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" ({})", config.profile)
    };
    let needs_login = |sentence: String| {
        let link = config
            .public_url
            .as_ref()
            .and_then(|_| crate::session::login_link::issue(session).ok());
        let next = match &link {
            Some(link) => format!(
                "Tap Log in to open the Kite login; the link works until {}.",
                until(&link.expires_at, &event.at, " IST")
            ),
            None => "Log in on the machine running kited: `kitectl login --open`.".to_string(),
        };
        Message {
            event: event.kind.name(),
            title: format!("Kite login needed{profile}"),
            text: format!("{sentence}\n{next}"),
            link: link.map(|l| l.link),
            priority: URGENT,
        }
    };
    match &event.kind {
        EventKind::LoginRequired { .. } => {
            needs_login("Kite login needed: no valid token before market open".into())
        }
        EventKind::TokenExpired { expires_at } => needs_login(format!(
            "Kite login needed: the token expired at {} IST",
            short_time(expires_at)
        )),
        EventKind::TokenInvalidated { reason } => needs_login(format!(
            "Kite login needed: the token was invalidated ({reason})"
        )),
        EventKind::TokenExpiring { expires_at, .. } => Message {
            event: event.kind.name(),
            title: format!("Kite token expiring{profile}"),
            text: format!(
                "{}\nIt stops working at {} IST; log in again after that.",
                event.sentence(),
                short_time(expires_at)
            ),
            link: None,
            priority: URGENT,
        },
        EventKind::TokenNew {
            user_id,
            user_name,
            expires_at,
        } => {
            let who = if user_name.is_empty() || user_name == user_id {
                user_id.clone()
            } else {
                format!("{user_name} ({user_id})")
            };
            Message {
                event: event.kind.name(),
                title: format!("Kite logged in{profile}"),
                text: format!(
                    "Logged in as {who}; valid until {}\nPrograms get the token with `kitectl get-token`.",
                    until(expires_at, &event.at, " IST")
                ),
                link: None,
                priority: NORMAL,
            }
        }
        EventKind::OrderUpdate { .. } => Message {
            event: event.kind.name(),
            title: format!("Kite order update{profile}"),
            text: event.sentence(),
            link: None,
            priority: NORMAL,
        },
        EventKind::MarketReady { .. } => Message {
            event: event.kind.name(),
            title: format!("Kite ready for the market{profile}"),
            text: format!(
                "{}\nToken, Kite, network and clock are fine for 09:15.",
                event.sentence()
            ),
            link: None,
            priority: NORMAL,
        },
        EventKind::MarketNotReady { checks } => {
            let failed: Vec<String> = checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            let sentence = format!(
                "Not ready for the market: {} check{} failed\n{}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" },
                failed.join("\n")
            );
            let token_failed = checks.iter().any(|c| c.name == "token" && !c.ok);
            if token_failed {
                let mut message = needs_login(sentence);
                message.title = format!("Kite not ready for the market{profile}");
                message
            } else {
                Message {
                    event: event.kind.name(),
                    title: format!("Kite not ready for the market{profile}"),
                    text: format!("{sentence}\nRun `kitectl doctor` on the machine running kited."),
                    link: None,
                    priority: URGENT,
                }
            }
        }
        EventKind::EnvFileFailed { .. } => Message {
            event: event.kind.name(),
            title: format!("kited env file failing{profile}"),
            text: event.sentence(),
            link: None,
            priority: URGENT,
        },
    }
}

/// What `kitectl push-test` sends.
pub fn test(session: &Session) -> Message {
    let profile = session.config().profile.clone();
    Message {
        event: "test",
        title: "kited test message".into(),
        text: format!(
            "Test message from kited (profile {profile}): this channel works. Login reminders \
             and links will arrive here."
        ),
        link: None,
        priority: NORMAL,
    }
}
