//! The token API for web dashboards and Kite's browser callback: the routes that log in (the callback page,
//! `refresh-info`, `generate-access-token`) and Kite's order postbacks.

use crate::clock;
use crate::config::public_url::HostKind;
use crate::server::http::page;
use crate::server::http::reply::{detail, error_status, json_response, Body};
use crate::server::http::request::HttpRequest;
use crate::session::error::SessionError;
use crate::session::Session;
use chrono::{DateTime, FixedOffset};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use kite_proto::EventKind;
use serde_json::{json, Value};

/// Kite's redirect: check, exchange, then a small page saying what happened.
pub async fn callback(session: &Session, query: &str, host: HostKind) -> Response<Body> {
    let home_link = host == HostKind::Loopback;
    match session.complete_callback(query).await {
        Ok(record) => {
            let message = format!(
                "Logged in as {} — you can close this tab.",
                record.profile.display_name()
            );
            let details =
                vec![
                format!("The token is valid until {}.", human_time(record.expires_at)),
                "kited stored it: programs get it with `kitectl get-token` (no restart needed)."
                    .to_string(),
            ];
            page::callback_page(
                StatusCode::OK,
                &page::CallbackOutcome {
                    title: "Logged in",
                    message: &message,
                    details: &details,
                    home_link,
                    to_paste_box: false,
                },
            )
        }
        Err(SessionError::BadState) if !has_param(query, "state") => {
            // Kite's redirect for a login kited did not start (a bookmarked login URL, Kite's
            // developer console): without kited's `state` it cannot be trusted automatically,
            // but the person who started it can paste it, which works.
            tracing::warn!("browser callback without kited's state: pointing to the paste box");
            let details = if home_link {
                vec![
                    "If you started this login yourself, copy this page's address (it holds the \
                     request_token) and paste it into step 3 of the kited page: that works."
                        .to_string(),
                    "Next time, start from Log in with Kite on the kited page, or \
                     `kitectl login --open`."
                        .to_string(),
                ]
            } else {
                vec![
                    "If you started this login yourself, copy this page's address and paste it \
                     into `kitectl exchange` on the machine running kited."
                        .to_string(),
                ]
            };
            page::callback_page(
                StatusCode::BAD_REQUEST,
                &page::CallbackOutcome {
                    title: "Login failed",
                    message: "This login did not start from kited, so kited did not take the \
                              token by itself.",
                    details: &details,
                    home_link,
                    to_paste_box: true,
                },
            )
        }
        Err(e) => {
            tracing::warn!("browser callback failed: {e}");
            let status = error_status(&e);
            let again = if home_link {
                "Start again from the kited page (Log in with Kite), or run \
                 `kitectl login --open`."
            } else {
                "Start again from a new login link: tap Log in on the newest kited message, or \
                 run `kitectl login --link` on the machine running kited."
            };
            let details = vec![format!("No new token was stored. {again}")];
            page::callback_page(
                status,
                &page::CallbackOutcome {
                    title: "Login failed",
                    message: &sentence(&e.to_string()),
                    details: &details,
                    home_link,
                    to_paste_box: false,
                },
            )
        }
    }
}

/// Whether the query string has the parameter `name` (with any value).
fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

/// The message with a capital first letter, as the page's headline.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `2026-11-24T06:00:00+05:30` → `06:00 IST on Tue 24 Nov 2026`.
fn human_time(time: DateTime<FixedOffset>) -> String {
    time.with_timezone(&clock::IST)
        .format("%H:%M IST on %a %-d %b %Y")
        .to_string()
}

pub fn refresh_info(session: &Session) -> Response<Body> {
    match session.login_url_for(crate::session::login_state::Asker::Web) {
        Ok((login_url, callback_url)) => {
            let mut response = json_response(
                StatusCode::OK,
                &json!({
                    "login_url": login_url,
                    "callback_url": callback_url,
                    "instructions": format!(
                        "Open login_url and log in to Kite. Kite redirects to {callback_url} and kited stores \
                         the new token by itself. If that redirect cannot reach this machine, paste the \
                         redirected URL into the kited page or run `kitectl exchange` and paste it there."
                    ),
                }),
            );
            // The URL carries a single-use state: never cache it.
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => detail(error_status(&e), &e.to_string()),
    }
}

/// `POST /api/token/generate-access-token`: a dashboard hands in the `request_token` itself.
pub async fn generate(session: &Session, request: &HttpRequest) -> Response<Body> {
    let fail = |status: StatusCode, why: &str| {
        detail(status, &format!("Failed to generate access token: {why}"))
    };
    if !is_json(&request.headers) {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
    }
    let body = match &request.body {
        Ok(body) => body,
        Err(too_bad) => return too_bad.response(),
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(_) => return fail(StatusCode::BAD_REQUEST, "the body is not valid JSON"),
    };
    let token = match value.get("request_token") {
        None | Some(Value::Null) => {
            return fail(StatusCode::BAD_REQUEST, "request_token is required")
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            return fail(StatusCode::BAD_REQUEST, "request_token is empty")
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return fail(StatusCode::BAD_REQUEST, "request_token must be a string"),
    };
    match session.exchange_pasted(&token).await {
        Ok(record) => {
            let mut body = json!({
                "success": true,
                "access_token": record.access_token.expose(),
                "expires_at": clock::rfc3339(record.expires_at),
                "message": "Access token generated successfully. kited stored it: programs get it with `kitectl get-token`.",
                "instructions": "No restart needed: run programs with `kitectl exec -- CMD`, or read the token with `kitectl get-token`.",
            });
            // The user's whole profile beside them, under Kite's own field names.
            if let (Value::Object(body), Ok(Value::Object(profile))) =
                (&mut body, serde_json::to_value(&record.profile))
            {
                body.extend(profile);
            }
            let mut response = json_response(StatusCode::OK, &body);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => fail(error_status(&e), &e.to_string()),
    }
}

/// Kite's order postback: raw JSON body whatever the Content-Type, checksum verified.
pub fn postback(session: &Session, request: &HttpRequest) -> Response<Body> {
    let body = match &request.body {
        Ok(body) => body,
        Err(too_bad) => return too_bad.response(),
    };
    let Ok(order) = serde_json::from_slice::<Value>(body) else {
        return detail(StatusCode::BAD_REQUEST, "postback body is not JSON");
    };
    let field = |name: &str| order.get(name).and_then(Value::as_str).unwrap_or("");
    let config = session.config();
    let Some(secret) = config.api_secret.as_ref() else {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "no api secret configured");
    };
    let expected = kite_proto::checksum::postback_checksum(
        field("order_id"),
        field("order_timestamp"),
        secret.expose(),
    );
    if field("order_id").is_empty()
        || !kite_proto::checksum::checksums_match(&expected, field("checksum"))
    {
        tracing::warn!("rejected a postback with a bad checksum");
        return detail(StatusCode::FORBIDDEN, "postback checksum does not match");
    }
    session.events().emit(EventKind::OrderUpdate { order });
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn json_content_type() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&HeaderMap::new()));
    }
}
