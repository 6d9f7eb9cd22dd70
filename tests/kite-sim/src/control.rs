//! The test-control side: the `/_sim/*` routes through which other processes (and the
//! `kite-sim` binary's users) do what the `Sim` methods do.

use serde_json::json;

use crate::faults::Fault;
use crate::reply::{input_exception, Reply};
use crate::request::ApiRequest;
use crate::state::{lock, Shared, User};

/// `/_sim/*`: the control surface for other processes and humans.
pub(crate) fn control(shared: &Shared, req: &ApiRequest) -> Reply {
    let query = req.query_pairs();
    let count = || {
        query
            .get("count")
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(1)
    };
    let on = || {
        !matches!(
            query.get("on").map(String::as_str),
            Some("0" | "false" | "off" | "no")
        )
    };
    let ok = || Reply::json(200, json!({"ok": true}));
    let mut state = lock(shared);
    match req.path.as_str() {
        "/_sim/fail" => match query.get("status").and_then(|s| s.parse::<u16>().ok()) {
            Some(status) if (100..1000).contains(&status) => {
                let n = count();
                state
                    .faults
                    .extend(std::iter::repeat_n(Fault::Status(status), n));
                ok()
            }
            _ => input_exception("`status` must be an HTTP status code."),
        },
        "/_sim/hang" => {
            let n = count();
            state.faults.extend(std::iter::repeat_n(Fault::Hang, n));
            ok()
        }
        "/_sim/fault" => {
            let fault =
                match query.get("kind").map(String::as_str) {
                    Some("hang") => Fault::Hang,
                    Some("non-json") => Fault::NonJson,
                    Some("wrong-content-type") => Fault::WrongContentType,
                    Some("truncated") => Fault::Truncated,
                    Some("status") => match query.get("status").and_then(|s| s.parse().ok()) {
                        Some(status) => Fault::Status(status),
                        None => return input_exception("`status` must be an HTTP status code."),
                    },
                    _ => return input_exception(
                        "`kind` must be hang, non-json, wrong-content-type, truncated or status.",
                    ),
                };
            let n = count();
            state.faults.extend(std::iter::repeat_n(fault, n));
            ok()
        }
        "/_sim/clear-faults" => {
            state.faults.clear();
            ok()
        }
        "/_sim/kill" => match query.get("access_token") {
            Some(token) => {
                state.access_tokens.remove(token);
                ok()
            }
            None => {
                state.access_tokens.clear();
                ok()
            }
        },
        "/_sim/redirect" => match query.get("url") {
            Some(url) if url::Url::parse(url).is_ok() => {
                state.redirect_url = Some(url.clone());
                ok()
            }
            _ => input_exception("`url` must be an absolute URL."),
        },
        "/_sim/cancel" => {
            state.cancel = on();
            ok()
        }
        "/_sim/user" => match (query.get("user_id"), query.get("user_name")) {
            (Some(id), name) => {
                state.user = User {
                    user_id: id.clone(),
                    user_name: name.cloned().unwrap_or_else(|| id.clone()),
                };
                ok()
            }
            _ => input_exception("Missing or empty field `user_id`."),
        },
        "/_sim/login-time" => {
            state.login_time = query.get("t").filter(|t| !t.is_empty()).cloned();
            ok()
        }
        "/_sim/refresh-tokens" => {
            state.issue_refresh_tokens = on();
            ok()
        }
        "/_sim/date-offset" => match query.get("secs").map(|s| s.parse::<i64>()) {
            Some(Ok(secs)) if secs.unsigned_abs() < 100 * 365 * 86_400 => {
                state.date_offset_secs = secs;
                ok()
            }
            _ => input_exception("`secs` must be a whole number of seconds (negative: behind)."),
        },
        "/_sim/calls" => Reply::json(200, json!(state.calls)),
        "/_sim/tokens" => {
            let mut tokens: Vec<&String> = state.access_tokens.keys().collect();
            tokens.sort();
            Reply::json(200, json!({"access_tokens": tokens}))
        }
        "/_sim/request-token" => {
            Reply::json(200, json!({"request_token": state.issue_request_token()}))
        }
        _ => Reply::error(404, "GeneralException", "Unknown simulator control route."),
    }
}
