//! The socket's requests, each answered with its own answer type. Knows nothing of sockets, so
//! every request is testable on its own.

use crate::session::{Session, SessionError};
use kite_proto::message::{
    Ack, DoctorReport, Exchange, GetToken, IssuedToken, LoginUrls, Pong, PushResult, PushResults,
    Shutdown, Status, StatusReport, Watch,
};
use kite_proto::{answer_line, Answer, Call, ErrorKind, Request, WireError};
use std::time::Duration;

/// Answers one request as its answer line. `watch` and `shutdown` only acknowledge here; the
/// connection acts after.
pub async fn answer(session: &Session, request: Request) -> String {
    match request {
        Request::Ping(_) => line::<kite_proto::message::Ping>(&Ok(ping())),
        Request::Status(_) => line::<Status>(&Ok(status(session))),
        Request::GetToken(request) => line::<GetToken>(&get_token(session, request).await),
        Request::LoginUrl(_) => line::<kite_proto::message::LoginUrl>(&login_url(session)),
        Request::LoginLink(_) => line::<kite_proto::message::LoginLink>(
            &crate::session::login_link::issue(session).map_err(wire),
        ),
        Request::PushTest(_) => line::<kite_proto::message::PushTest>(&push_test(session).await),
        Request::Doctor(_) => line::<kite_proto::message::Doctor>(&Ok(doctor(session).await)),
        Request::RevokeLinks(_) => line::<kite_proto::message::RevokeLinks>(
            &session.revoke_links().await.map(|()| Ack {}).map_err(wire),
        ),
        Request::Exchange(request) => line::<Exchange>(&exchange(session, request).await),
        Request::Logout(_) => line::<kite_proto::message::Logout>(&logout(session).await),
        Request::Watch(_) => line::<Watch>(&Ok(Ack {})),
        Request::Shutdown(_) => line::<Shutdown>(&Ok(Ack {})),
    }
}

/// The answer line for a request of type `C`: the answer's type is checked against the request's.
fn line<C: Call>(answer: &Answer<C::Answer>) -> String {
    answer_line(answer)
}

fn wire(error: SessionError) -> WireError {
    error.to_wire()
}

pub fn ping() -> Pong {
    Pong {
        version: kite_proto::VERSION.to_string(),
    }
}

pub fn status(session: &Session) -> StatusReport {
    StatusReport {
        status: session.status(),
    }
}

pub async fn get_token(session: &Session, request: GetToken) -> Answer<IssuedToken> {
    let wait = request.wait_secs.map(Duration::from_secs);
    let token = session.get_token(wait).await.map_err(wire)?;
    Ok(IssuedToken {
        access_token: token.access_token.expose().to_string(),
        api_key: token.api_key,
        expires_at: crate::clock::rfc3339(token.expires_at),
    })
}

/// One test message through every push channel; `bad_request` when there is none.
pub async fn push_test(session: &Session) -> Answer<PushResults> {
    if !session.config().push.any() {
        return Err(WireError::new(
            ErrorKind::BadRequest,
            "no push channel configured: add [push.telegram] or [push.ntfy] to the config \
             file (see \"Log in from your phone\" in the operations guide)",
        ));
    }
    let results = crate::notify::push::test(session)
        .await
        .into_iter()
        .map(|r| PushResult {
            channel: r.channel.to_string(),
            ok: r.error.is_none(),
            error: r.error,
        })
        .collect();
    Ok(PushResults { results })
}

/// The readiness checks, run now. They wait on Kite and the IP echo (each bounded by
/// `kite.timeout`) on this connection's own task: other clients are not held up.
pub async fn doctor(session: &Session) -> DoctorReport {
    DoctorReport {
        checks: crate::readiness::run(session).await,
    }
}

pub fn login_url(session: &Session) -> Answer<LoginUrls> {
    let (login_url, callback_url) = session.login_url().map_err(wire)?;
    Ok(LoginUrls {
        login_url,
        callback_url,
    })
}

pub async fn exchange(session: &Session, request: Exchange) -> Answer<StatusReport> {
    let result = match (request.request_token, request.callback_url) {
        (Some(token), None) => session.exchange(token.trim()).await,
        (None, Some(url)) => session.exchange_pasted(&url).await,
        _ => {
            return Err(WireError::new(
                ErrorKind::BadRequest,
                "exchange needs exactly one of request_token or callback_url",
            ))
        }
    };
    result.map_err(wire)?;
    Ok(status(session))
}

pub async fn logout(session: &Session) -> Answer<Ack> {
    session.logout().await.map_err(wire)?;
    Ok(Ack {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::fixture::{self, ACCESS_TOKEN, API_KEY};
    use kite_proto::TokenState;

    const MORNING: &str = "2026-11-23 10:00:00";
    const EXPIRES: &str = "2026-11-24T06:00:00+05:30";

    fn kind<T>(answer: Answer<T>) -> Option<ErrorKind> {
        answer.err().map(|e| e.kind)
    }

    #[tokio::test]
    async fn not_configured_answers() {
        let f = fixture::session(false, None, MORNING);
        assert_eq!(ping().version, kite_proto::VERSION);
        let report = status(&f.session);
        assert!(!report.status.configured);
        assert_eq!(report.status.state, TokenState::None);
        assert_eq!(kind(login_url(&f.session)), Some(ErrorKind::NotConfigured));
        let exchange_request = Exchange {
            request_token: Some("abc".into()),
            callback_url: None,
        };
        assert_eq!(
            kind(exchange(&f.session, exchange_request).await),
            Some(ErrorKind::NotConfigured)
        );
    }

    #[tokio::test]
    async fn get_token_follows_the_clock() {
        let valid = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
        let token = get_token(&valid.session, GetToken { wait_secs: None })
            .await
            .unwrap();
        assert_eq!(token.access_token, ACCESS_TOKEN);
        assert_eq!(token.api_key, API_KEY);
        // The same record read after 06:00 is dead, whatever the store says.
        let late = fixture::session(true, Some(fixture::token(EXPIRES)), "2026-11-24 06:00:00");
        let answer = get_token(&late.session, GetToken { wait_secs: Some(0) }).await;
        assert_eq!(kind(answer), Some(ErrorKind::LoginRequired));
    }

    #[tokio::test]
    async fn login_url_carries_a_fresh_state() {
        let f = fixture::session(true, None, MORNING);
        let first = login_url(&f.session).unwrap();
        assert!(
            first
                .login_url
                .contains("v=3&api_key=kitedtestkey0001&redirect_params=state%3D"),
            "{}",
            first.login_url
        );
        assert_eq!(first.callback_url, "http://127.0.0.1:8079/auth/callback");
        assert_ne!(first.login_url, login_url(&f.session).unwrap().login_url);
    }

    #[tokio::test]
    async fn malformed_exchanges_never_reach_kite() {
        let f = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
        for (request_token, callback_url) in [
            (None, None),
            (Some("a"), Some("b")),
            (Some("<script>"), None),
            (None, Some("http://x/?status=cancelled")),
        ] {
            let request = Exchange {
                request_token: request_token.map(String::from),
                callback_url: callback_url.map(String::from),
            };
            assert_eq!(
                kind(exchange(&f.session, request).await),
                Some(ErrorKind::BadRequest)
            );
        }
        // The stored token is untouched.
        assert!(get_token(&f.session, GetToken { wait_secs: None })
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn answer_lines_keep_the_contract_shape() {
        let f = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
        let line = answer(
            &f.session,
            Request::parse(br#"{"op":"get_token"}"#).unwrap(),
        )
        .await;
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ok"], true);
        assert_eq!(value["access_token"], ACCESS_TOKEN);
        assert_eq!(value["expires_at"], EXPIRES);
        let line = answer(&f.session, Request::parse(br#"{"op":"logout"}"#).unwrap()).await;
        assert_eq!(line, "{\"ok\":true}\n");
        let line = answer(
            &f.session,
            Request::parse(br#"{"op":"get_token"}"#).unwrap(),
        )
        .await;
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ok"], false);
        assert_eq!(value["error"]["kind"], "login_required");
    }
}
