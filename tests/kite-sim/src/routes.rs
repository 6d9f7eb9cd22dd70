//! The Kite Connect API routes: the browser login, the request-token exchange, logout,
//! profile and renewal, each answering as Kite's documentation says Kite does.

use std::collections::HashMap;

use hyper::Method;
use kite_proto::checksum::{checksums_match, refresh_checksum, session_checksum};
use serde_json::json;

use crate::reply::{input_exception, token_exception, Reply};
use crate::request::ApiRequest;
use crate::state::{profile_data, State};

const BAD_ACCESS_TOKEN: &str = "Incorrect `api_key` or `access_token`.";
const BAD_TOKEN: &str = "Token is invalid or has expired.";
const SHORT_API_KEY: &str = "`api_key` should be minimum 6 characters in length.";

pub(crate) fn route(state: &mut State, req: &ApiRequest) -> Reply {
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/connect/login") => login(state, req),
        (&Method::POST, "/session/token") => exchange(state, req),
        (&Method::DELETE, "/session/token") => logout(state, req),
        (&Method::GET, "/user/profile") => profile(state, req),
        (&Method::POST, "/session/refresh_token") => renew(state, req),
        (_, "/session/token" | "/user/profile" | "/session/refresh_token") => {
            Reply::error(405, "GeneralException", "Method not allowed.")
        }
        _ => Reply::error(404, "GeneralException", "Route not found."),
    }
}

/// `GET /connect/login`: a human who logs in and approves (or cancels).
fn login(state: &mut State, req: &ApiRequest) -> Reply {
    let query = req.query_pairs();
    if query.get("api_key") != Some(&state.api_key) {
        return Reply::html(400, "Invalid `api_key`.");
    }
    let Some(redirect) = state.redirect_url.clone() else {
        return Reply::html(
            400,
            "This app has no redirect URL: set one on the developer console.",
        );
    };
    let Ok(mut location) = url::Url::parse(&redirect) else {
        return Reply::html(400, "This app's redirect URL is invalid.");
    };
    if state.cancel {
        location
            .query_pairs_mut()
            .append_pair("status", "cancelled");
    } else {
        let token = state.issue_request_token();
        let mut pairs = location.query_pairs_mut();
        pairs
            .append_pair("action", "login")
            .append_pair("type", "login")
            .append_pair("status", "success")
            .append_pair("request_token", &token);
        if let Some(extra) = query.get("redirect_params") {
            for (k, v) in url::form_urlencoded::parse(extra.as_bytes()) {
                pairs.append_pair(&k, &v);
            }
        }
    }
    let mut reply = Reply::html(302, "Redirecting");
    reply.headers.push(("location", location.to_string()));
    reply
}

/// Checks the api key of a form or query; `Err` is the answer to give.
fn check_api_key(state: &State, api_key: Option<&String>) -> Result<(), Reply> {
    match api_key {
        Some(key) if key.len() >= 6 => {
            if *key == state.api_key {
                Ok(())
            } else {
                Err(token_exception("Invalid `api_key`."))
            }
        }
        _ => Err(input_exception(SHORT_API_KEY)),
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, Reply> {
    match form.get(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(input_exception(&format!(
            "Missing or empty field `{name}`."
        ))),
    }
}

/// `POST /session/token`.
fn exchange(state: &mut State, req: &ApiRequest) -> Reply {
    let form = req.form();
    let result = (|| {
        check_api_key(state, form.get("api_key"))?;
        let request_token = required(&form, "request_token")?;
        let checksum = required(&form, "checksum")?;
        let expected = session_checksum(&state.api_key, request_token, &state.api_secret);
        if !checksums_match(&expected, checksum) {
            return Err(token_exception("Invalid `checksum`."));
        }
        let ttl = state.ttl;
        let user = match state.request_tokens.get_mut(request_token) {
            Some(t) if !t.used && t.issued.elapsed() < ttl => {
                t.used = true;
                t.user.clone()
            }
            _ => return Err(token_exception(BAD_TOKEN)),
        };
        Ok(Reply::success(state.new_session(&user, None)))
    })();
    result.unwrap_or_else(|reply| reply)
}

/// `DELETE /session/token?api_key&access_token|refresh_token`.
fn logout(state: &mut State, req: &ApiRequest) -> Reply {
    let query = req.query_pairs();
    if let Err(reply) = check_api_key(state, query.get("api_key")) {
        return reply;
    }
    let access = query.get("access_token").filter(|t| !t.is_empty());
    let refresh = query.get("refresh_token").filter(|t| !t.is_empty());
    match (access, refresh) {
        (Some(token), _) => match state.access_tokens.remove(token) {
            Some(_) => Reply::success(json!(true)),
            None => token_exception(BAD_ACCESS_TOKEN),
        },
        (None, Some(token)) => match state.refresh_tokens.remove(token) {
            Some(_) => Reply::success(json!(true)),
            None => token_exception(BAD_TOKEN),
        },
        (None, None) => input_exception("Missing or empty field `access_token`."),
    }
}

/// `GET /user/profile` with `Authorization: token api_key:access_token`.
fn profile(state: &mut State, req: &ApiRequest) -> Reply {
    let credentials = req.authorization.as_deref().and_then(|value| {
        let (scheme, rest) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("token") {
            return None;
        }
        rest.trim().split_once(':')
    });
    match credentials {
        Some((api_key, token)) if api_key == state.api_key => {
            match state.access_tokens.get(token) {
                Some(session) => Reply::success(profile_data(&session.user)),
                None => token_exception(BAD_ACCESS_TOKEN),
            }
        }
        _ => token_exception(BAD_ACCESS_TOKEN),
    }
}

/// `POST /session/refresh_token`: renews an access token without a login.
fn renew(state: &mut State, req: &ApiRequest) -> Reply {
    let form = req.form();
    let result = (|| {
        check_api_key(state, form.get("api_key"))?;
        let refresh_token = required(&form, "refresh_token")?;
        let checksum = required(&form, "checksum")?;
        let expected = refresh_checksum(&state.api_key, refresh_token, &state.api_secret);
        if !checksums_match(&expected, checksum) {
            return Err(token_exception("Invalid `checksum`."));
        }
        let Some(user) = state.refresh_tokens.get(refresh_token).cloned() else {
            return Err(token_exception(BAD_TOKEN));
        };
        Ok(Reply::success(
            state.new_session(&user, Some(refresh_token.to_string())),
        ))
    })();
    result.unwrap_or_else(|reply| reply)
}
