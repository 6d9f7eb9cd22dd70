//! The web page and its scripts, compiled into the binary, and the small callback result page.

use crate::server::http::reply::set_static;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header;
use hyper::{Response, StatusCode};

/// No inline script or style anywhere, no framing, no referrer (the callback URL carries a
/// request token), no form posts elsewhere.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[derive(Debug, Clone, Copy)]
pub enum Asset {
    Index,
    AppJs,
    AppCss,
    FlowJs,
    Icon,
}

impl Asset {
    fn body_and_type(self) -> (&'static str, &'static str) {
        match self {
            Asset::Index => (
                include_str!("../../../assets/index.html"),
                "text/html; charset=utf-8",
            ),
            Asset::AppJs => (
                include_str!("../../../assets/app.js"),
                "text/javascript; charset=utf-8",
            ),
            Asset::AppCss => (
                include_str!("../../../assets/app.css"),
                "text/css; charset=utf-8",
            ),
            Asset::FlowJs => (
                include_str!("../../../assets/kite-token-flow.js"),
                "text/javascript; charset=utf-8",
            ),
            Asset::Icon => (include_str!("../../../assets/icon.svg"), "image/svg+xml"),
        }
    }
}

pub fn asset(asset: Asset) -> Response<Full<Bytes>> {
    let (body, content_type) = asset.body_and_type();
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    set_static(
        response.headers_mut(),
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    );
    if matches!(asset, Asset::Index) {
        secure_html(&mut response);
    }
    response
}

fn secure_html(response: &mut Response<Full<Bytes>>) {
    set_static(
        response.headers_mut(),
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    );
}

/// What the callback page says: a title, the outcome, and what to do next.
pub struct CallbackOutcome<'a> {
    pub title: &'a str,
    pub message: &'a str,
    /// Secondary lines (when the token expires, what programs do now, how to retry).
    pub details: &'a [String],
    /// Whether to offer "Back to kited": only where the token page is reachable (loopback).
    pub home_link: bool,
    /// Whether that link goes straight to the page's paste box (a login kited did not start).
    pub to_paste_box: bool,
}

/// The page the browser lands on after Kite's redirect. Never shows the token. Styled by
/// `/static/app.css` (no inline style or script, so the CSP stays strict).
pub fn callback_page(status: StatusCode, outcome: &CallbackOutcome<'_>) -> Response<Full<Bytes>> {
    let html = callback_html(status.is_success(), outcome);
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    set_static(
        response.headers_mut(),
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
    );
    secure_html(&mut response);
    response
}

fn callback_html(ok: bool, outcome: &CallbackOutcome<'_>) -> String {
    let class = if ok { "ok" } else { "fail" };
    let details: String = outcome
        .details
        .iter()
        .map(|line| format!("<p class=\"detail\">{}</p>", rich(line)))
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>kited: {title}</title>\
         <link rel=\"icon\" href=\"/static/icon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body class=\"callback-body\"><header class=\"top\"><h1>kited \
         <span class=\"sub\">Kite Connect access token</span></h1></header>\
         <main><section class=\"card callback {class}\" role=\"{role}\">\
         <h2 id=\"callback-title\"><span class=\"mark\" aria-hidden=\"true\">{mark}</span> {title}</h2>\
         <p id=\"callback-message\" class=\"message\">{message}</p>{details}{home}\
         </section></main></body></html>\n",
        home = match (outcome.home_link, outcome.to_paste_box) {
            (true, true) => "<p class=\"actions\"><a id=\"back\" class=\"button primary\" href=\"/#step-paste\">Paste it on the kited page</a></p>",
            (true, false) => "<p class=\"actions\"><a id=\"back\" class=\"button primary\" href=\"/\">Back to kited</a></p>",
            (false, _) => "",
        },
        title = escape(outcome.title),
        message = rich(outcome.message),
        role = if ok { "status" } else { "alert" },
        mark = if ok { "✓" } else { "!" },
    )
}

/// Escaped text in which `backticked` parts become `<code>` (commands in messages).
fn rich(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 && !part.is_empty() {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

/// HTML-escapes text for element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_page_escapes_everything() {
        let details = vec!["<b>detail</b>".to_string()];
        let html = callback_html(
            false,
            &CallbackOutcome {
                title: "<i>t</i>",
                message: "<script>alert(1)</script>",
                details: &details,
                home_link: true,
                to_paste_box: false,
            },
        );
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<b>detail"), "{html}");
        assert!(!html.contains("<i>t"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(
            rich("run `kitectl <x>` now"),
            "run <code>kitectl &lt;x&gt;</code> now"
        );
        assert_eq!(rich("`<b>`"), "<code>&lt;b&gt;</code>");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
