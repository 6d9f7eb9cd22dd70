//! A loopback Telegram Bot API, as its public documentation describes it, for what kited uses:
//! `POST /bot<TOKEN>/sendMessage` with a JSON body (`chat_id`, `text`, optional `reply_markup`
//! with an inline keyboard). Answers are `{"ok":true,"result":Message}` or
//! `{"ok":false,"error_code":N,"description":"..."}` with the HTTP status equal to `error_code`;
//! flood control is 429 with `parameters.retry_after` (seconds); a wrong token is 401
//! "Unauthorized"; method names are case-insensitive. Fault controls: see [`PushFault`].

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::push_sim::{Answer, PushFault, Received, Service, SimServer};

/// A bot token shaped like BotFather's (`<bot id>:<35 characters>`).
pub const DEFAULT_BOT_TOKEN: &str = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc";
/// The private chat the tests' bot writes to.
pub const DEFAULT_CHAT_ID: &str = "123456789";

/// One message the "chat" received (a request Telegram accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub chat_id: String,
    pub text: String,
    /// The inline keyboard's buttons as (text, url).
    pub buttons: Vec<(String, String)>,
    pub at: Instant,
}

impl SentMessage {
    /// The "Log in" button's URL, if there is one.
    pub fn login_url(&self) -> Option<&str> {
        self.buttons
            .iter()
            .find(|(text, _)| text == "Log in")
            .map(|(_, url)| url.as_str())
    }
}

struct Telegram {
    token: String,
    chat_id: String,
}

/// A running Telegram simulator; clones share it.
#[derive(Clone)]
pub struct TelegramSim {
    server: SimServer,
    token: String,
    chat_id: String,
}

impl TelegramSim {
    /// A bot with [`DEFAULT_BOT_TOKEN`] that may write to [`DEFAULT_CHAT_ID`].
    pub fn start() -> TelegramSim {
        let (token, chat_id) = (DEFAULT_BOT_TOKEN.to_string(), DEFAULT_CHAT_ID.to_string());
        let server = SimServer::start(
            "telegram-sim",
            Telegram {
                token: token.clone(),
                chat_id: chat_id.clone(),
            },
        );
        TelegramSim {
            server,
            token,
            chat_id,
        }
    }

    /// The `api_root` to configure: `http://127.0.0.1:PORT`.
    pub fn api_root(&self) -> String {
        self.server.url()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }

    /// The next `n` requests get `fault`.
    pub fn fault_next(&self, n: usize, fault: PushFault) {
        self.server.fault_next(n, fault);
    }

    /// Every request, whatever its answer (retries show up here).
    pub fn requests(&self) -> Vec<Received> {
        self.server.requests()
    }

    /// Messages the chat received (requests answered `ok`).
    pub fn messages(&self) -> Vec<SentMessage> {
        self.requests().iter().filter_map(accepted).collect()
    }

    /// Polls until a received message's text contains `needle`; panics after `timeout`.
    pub fn wait_for_message(&self, needle: &str, timeout: Duration) -> SentMessage {
        let found = self.server.wait_for(1, timeout, |r| {
            accepted(r).is_some_and(|m| m.text.contains(needle))
        });
        accepted(&found[0]).expect("an accepted message")
    }

    /// Polls until `n` requests arrived; panics after `timeout`.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.server.wait_for(n, timeout, |_| true)
    }
}

fn accepted(request: &Received) -> Option<SentMessage> {
    if request.status != Some(200) {
        return None;
    }
    let body = request.json();
    let buttons = body["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .map(|b| {
            (
                b["text"].as_str().unwrap_or("").to_string(),
                b["url"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    Some(SentMessage {
        chat_id: chat_id_text(&body["chat_id"]),
        text: body["text"].as_str().unwrap_or("").to_string(),
        buttons,
        at: request.at,
    })
}

/// Telegram takes a chat id as an integer or a string.
fn chat_id_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn error(code: u16, description: &str) -> Answer {
    Answer::json(
        code,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

impl Service for Telegram {
    fn route(&self, r: &Received) -> Answer {
        let Some(rest) = r.path.strip_prefix("/bot") else {
            return error(404, "Not Found");
        };
        let Some((token, method)) = rest.split_once('/') else {
            return error(404, "Not Found");
        };
        if token != self.token {
            return error(401, "Unauthorized");
        }
        if !method.eq_ignore_ascii_case("sendMessage") {
            return error(404, "Not Found");
        }
        if r.method != "POST" && r.method != "GET" {
            return error(405, "Method Not Allowed");
        }
        let is_json = r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"));
        let body = r.json();
        if !is_json || !body.is_object() {
            return error(400, "Bad Request: message text is empty");
        }
        let chat_id = chat_id_text(&body["chat_id"]);
        if chat_id.is_empty() {
            return error(400, "Bad Request: chat_id is empty");
        }
        if chat_id != self.chat_id {
            return error(400, "Bad Request: chat not found");
        }
        let text = body["text"].as_str().unwrap_or("");
        if text.trim().is_empty() {
            return error(400, "Bad Request: message text is empty");
        }
        if text.chars().count() > 4096 {
            return error(400, "Bad Request: message is too long");
        }
        if let Some(markup) = body.get("reply_markup") {
            let rows = markup["inline_keyboard"].as_array();
            let well_formed = rows.is_some_and(|rows| {
                rows.iter().all(|row| {
                    row.as_array().is_some_and(|buttons| {
                        buttons.iter().all(|b| {
                            b["text"].is_string()
                                && b["url"].as_str().is_some_and(|u| u.starts_with("http"))
                        })
                    })
                })
            });
            if !well_formed {
                return error(400, "Bad Request: can't parse inline keyboard button");
            }
        }
        let date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut result = json!({
            "message_id": date % 100_000,
            "from": {"id": 4839574812u64, "is_bot": true, "first_name": "kited test bot", "username": "kited_test_bot"},
            "chat": {"id": chat_id.parse::<i64>().unwrap_or(0), "first_name": "Kite", "type": "private"},
            "date": date,
            "text": text,
        });
        if let Some(markup) = body.get("reply_markup") {
            result["reply_markup"] = markup.clone();
        }
        Answer::json(200, json!({"ok": true, "result": result}))
    }

    fn fault(&self, fault: PushFault) -> Answer {
        match fault {
            PushFault::RateLimited { retry_after } => Answer::json(
                429,
                json!({
                    "ok": false,
                    "error_code": 429,
                    "description": format!("Too Many Requests: retry after {retry_after}"),
                    "parameters": {"retry_after": retry_after},
                }),
            ),
            PushFault::Status(401) => error(401, "Unauthorized"),
            PushFault::Status(403) => error(403, "Forbidden: bot was blocked by the user"),
            PushFault::Status(400) => error(400, "Bad Request: chat not found"),
            PushFault::Status(code) if code >= 500 => error(code, "Internal Server Error"),
            PushFault::Status(code) => error(code, "Error"),
            // Never used: the server leaves a hung request unanswered.
            PushFault::Hang => error(504, "Gateway Timeout"),
        }
    }
}
