//! Login links for a phone: the `login_link` op issues `PUBLIC_URL/login?t=TICKET`, and
//! `GET /login` checks the ticket and sends the browser on to a fresh Kite login.

use crate::clock;
use crate::config::public_url::HostKind;
use crate::server::http::page;
use crate::session::login_state::Asker;
use crate::session::{Session, SessionError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use kite_proto::message::IssuedLink;

/// A fresh link, valid until the next cutoff. Needs `http.public_url` (a loopback link is no
/// use on a phone) and a configured Kite app (the link leads to its login).
pub fn issue(session: &Session) -> Result<IssuedLink, SessionError> {
    let config = session.config();
    let Some(public) = &config.public_url else {
        return Err(SessionError::BadRequest(
            "login links need http.public_url: the https:// address where your TLS proxy \
             reaches kited (see \"Log in from your phone\" in the operations guide)"
                .into(),
        ));
    };
    if !config.is_configured() {
        return Err(SessionError::NotConfigured(
            config.config_path.display().to_string(),
        ));
    }
    let expires_at = clock::expires_at(clock::ist(session.now()), config.expiry.cutoff);
    let ticket = session
        .ticket_key()
        .issue(expires_at.with_timezone(&chrono::Utc));
    Ok(IssuedLink {
        link: format!("{public}/login?t={ticket}"),
        expires_at: clock::rfc3339(expires_at),
    })
}

/// `GET /login[?t=TICKET]`: a 303 to a fresh Kite login URL. The public host needs a valid
/// ticket (403 otherwise); on loopback the person is at the machine and needs none.
pub fn serve(session: &Session, host: HostKind, query: &str) -> Response<Full<Bytes>> {
    let ticket = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned());
    if host != HostKind::Loopback {
        if let Err(why) = session.ticket_key().check(ticket.as_deref(), session.now()) {
            tracing::warn!("refused a login link: {why}");
            return refusal(
                StatusCode::FORBIDDEN,
                "Login link not valid",
                "This login link has expired or is not valid.",
                "Get a new one: tap Log in on the newest kited message, or run \
                 `kitectl login --link` on the machine running kited.",
            );
        }
    }
    // A ticket kited issued vouches for the asker, but a link can leak: its logins get a
    // pool of their own. On loopback anyone may ask, so the state goes with the other web ones.
    let asker = match ticket.as_deref() {
        Some(ticket) if host != HostKind::Loopback => Asker::Link(ticket),
        _ => Asker::Web,
    };
    match session.login_url_for(asker) {
        Ok((login_url, _)) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::SEE_OTHER;
            let headers = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&login_url) {
                headers.insert(header::LOCATION, location);
            }
            // The URL carries a single-use state: never cache it, never leak where it came from.
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Err(SessionError::TooManyLinkLogins(e)) => {
            tracing::warn!("refused a login through a link: {e}");
            refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many logins",
                "This login link started too many logins in the last minute.",
                "Wait a minute, then tap Log in again.",
            )
        }
        Err(e) => {
            tracing::warn!("a login link could not start a login: {e}");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "Login unavailable",
                "kited cannot start a Kite login right now.",
                "Fix the setup on the machine running kited (`kited check-config`), then ask \
                 for a new link.",
            )
        }
    }
}

fn refusal(status: StatusCode, title: &str, message: &str, next: &str) -> Response<Full<Bytes>> {
    let details = vec![next.to_string()];
    page::callback_page(
        status,
        &page::CallbackOutcome {
            title,
            message,
            details: &details,
            home_link: false,
            to_paste_box: false,
        },
    )
}
