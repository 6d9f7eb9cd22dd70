//! A loopback ntfy server, as its public documentation describes publishing: `POST` (or `PUT`)
//! `/<topic>` with the message as the body and `Title`, `Priority` (1-5 or min/low/default/
//! high/max/urgent), `Click` and `Actions` (`view, <label>, <url>`) headers; an access token as
//! `Authorization: Bearer tk_…`. Success is 200 with the message as JSON; errors are
//! `{"code":40101,"http":401,"error":"unauthorized","link":"…"}`-shaped with the HTTP status
//! equal to `http`. Fault controls: see [`PushFault`].

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::push_sim::{Answer, PushFault, Received, Service, SimServer};

/// The topic the tests publish to.
pub const DEFAULT_TOPIC: &str = "kite-7f3a9c";
/// An access token shaped like ntfy's (`tk_` and 29 characters).
pub const DEFAULT_TOKEN: &str = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2";

/// One published message.
#[derive(Debug, Clone, PartialEq)]
pub struct NtfyMessage {
    pub title: Option<String>,
    /// 1-5.
    pub priority: u8,
    pub message: String,
    pub click: Option<String>,
    /// Actions as (action, label, url).
    pub actions: Vec<(String, String, String)>,
    pub at: Instant,
}

struct Ntfy {
    topic: String,
    token: Option<String>,
}

/// A running ntfy simulator; clones share it.
#[derive(Clone)]
pub struct NtfySim {
    server: SimServer,
    topic: String,
}

impl NtfySim {
    /// A server whose topic [`DEFAULT_TOPIC`] needs `token` to publish (`None`: open topic).
    pub fn start(token: Option<&str>) -> NtfySim {
        let topic = DEFAULT_TOPIC.to_string();
        let server = SimServer::start(
            "ntfy-sim",
            Ntfy {
                topic: topic.clone(),
                token: token.map(str::to_string),
            },
        );
        NtfySim { server, topic }
    }

    /// The `url` to configure: server and topic.
    pub fn topic_url(&self) -> String {
        format!("{}/{}", self.server.url(), self.topic)
    }

    pub fn fault_next(&self, n: usize, fault: PushFault) {
        self.server.fault_next(n, fault);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.server.requests()
    }

    /// Messages published (requests answered 200).
    pub fn messages(&self) -> Vec<NtfyMessage> {
        self.requests().iter().filter_map(published).collect()
    }

    /// Polls until a published message contains `needle`; panics after `timeout`.
    pub fn wait_for_message(&self, needle: &str, timeout: Duration) -> NtfyMessage {
        let found = self.server.wait_for(1, timeout, |r| {
            published(r).is_some_and(|m| m.message.contains(needle))
        });
        published(&found[0]).expect("a published message")
    }

    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.server.wait_for(n, timeout, |_| true)
    }
}

/// `Priority` as ntfy reads it: 1-5 or a name; absent is 3.
fn priority(value: Option<&str>) -> Option<u8> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Some(3),
        Some("1" | "min") => Some(1),
        Some("2" | "low") => Some(2),
        Some("3" | "default") => Some(3),
        Some("4" | "high") => Some(4),
        Some("5" | "max" | "urgent") => Some(5),
        _ => None,
    }
}

/// The simple `Actions` format: `action, label, url[, …]`, several separated by `;`.
fn actions(value: Option<&str>) -> Option<Vec<(String, String, String)>> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Some(Vec::new());
    };
    value
        .split(';')
        .map(|one| {
            let parts: Vec<&str> = one.split(',').map(str::trim).collect();
            match parts.as_slice() {
                [action, label, url, ..] if *action == "view" && url.starts_with("http") => {
                    Some((action.to_string(), label.to_string(), url.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn published(request: &Received) -> Option<NtfyMessage> {
    if request.status != Some(200) {
        return None;
    }
    Some(NtfyMessage {
        title: request.header("title").map(str::to_string),
        priority: priority(request.header("priority"))?,
        message: request.body.clone(),
        click: request.header("click").map(str::to_string),
        actions: actions(request.header("actions"))?,
        at: request.at,
    })
}

fn error(http: u16, code: u32, text: &str) -> Answer {
    Answer::json(
        http,
        json!({"code": code, "http": http, "error": text, "link": "https://ntfy.sh/docs/publish/"}),
    )
}

impl Service for Ntfy {
    fn route(&self, r: &Received) -> Answer {
        if r.method != "POST" && r.method != "PUT" {
            return error(405, 40501, "method not allowed");
        }
        if r.path.trim_start_matches('/') != self.topic {
            return error(404, 40401, "page not found");
        }
        if let Some(token) = &self.token {
            if r.header("authorization") != Some(&format!("Bearer {token}")) {
                return error(401, 40101, "unauthorized");
            }
        }
        let Some(priority) = priority(r.header("priority")) else {
            return error(400, 40007, "invalid priority");
        };
        let Some(actions) = actions(r.header("actions")) else {
            return error(400, 40018, "invalid request: actions invalid");
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut message = json!({
            "id": format!("sim{now}"),
            "time": now,
            "expires": now + 43_200,
            "event": "message",
            "topic": self.topic,
            "message": r.body,
            "priority": priority,
        });
        if let Some(title) = r.header("title") {
            message["title"] = Value::from(title);
        }
        if let Some(click) = r.header("click") {
            message["click"] = Value::from(click);
        }
        if !actions.is_empty() {
            message["actions"] = actions
                .iter()
                .map(|(action, label, url)| json!({"action": action, "label": label, "url": url, "clear": false}))
                .collect();
        }
        Answer::json(200, message)
    }

    fn fault(&self, fault: PushFault) -> Answer {
        match fault {
            PushFault::RateLimited { retry_after } => {
                let mut answer = error(429, 42901, "limit reached: too many requests");
                answer
                    .headers
                    .push(("retry-after", retry_after.to_string()));
                answer
            }
            PushFault::Status(401) => error(401, 40101, "unauthorized"),
            PushFault::Status(403) => error(403, 40301, "forbidden"),
            PushFault::Status(code) if code >= 500 => error(code, 50001, "internal server error"),
            PushFault::Status(code) => error(code, 40001, "invalid request"),
            // Never used: the server leaves a hung request unanswered.
            PushFault::Hang => error(504, 50401, "gateway timeout"),
        }
    }
}
