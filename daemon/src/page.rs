//! The web page and its scripts, compiled into the binary, and the small callback result page.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
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
}

impl Asset {
    fn body_and_type(self) -> (&'static str, &'static str) {
        match self {
            Asset::Index => (
                include_str!("../assets/index.html"),
                "text/html; charset=utf-8",
            ),
            Asset::AppJs => (
                include_str!("../assets/app.js"),
                "text/javascript; charset=utf-8",
            ),
            Asset::AppCss => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
            Asset::FlowJs => (
                include_str!("../assets/kite-token-flow.js"),
                "text/javascript; charset=utf-8",
            ),
        }
    }
}

pub fn asset(asset: Asset) -> Response<Full<Bytes>> {
    let (body, content_type) = asset.body_and_type();
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if matches!(asset, Asset::Index) {
        secure_html(&mut response);
    }
    response
}

fn secure_html(response: &mut Response<Full<Bytes>>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// The page the browser lands on after Kite's redirect. Never shows the token.
pub fn callback_page(status: StatusCode, title: &str, message: &str) -> Response<Full<Bytes>> {
    let class = if status.is_success() { "ok" } else { "fail" };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>kited: {title}</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><main class=\"callback {class}\"><h1 id=\"callback-title\">{title}</h1>\
         <p id=\"callback-message\">{message}</p><p><a id=\"back\" href=\"/\">Back to kited</a></p>\
         </main></body></html>\n",
        title = escape(title),
        message = escape(message),
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure_html(&mut response);
    response
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
    fn escapes_markup() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
