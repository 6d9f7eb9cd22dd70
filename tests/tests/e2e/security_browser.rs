//! Attacks from a web page: CORS only for allowed origins, strict security headers, request-token injection.

use kite_tests::harness::free_port;
use kite_tests::http_client::{self, HttpReply};
use serde_json::json;

use crate::helper::http::{assert_detail, generate, header, post_json_raw, GENERATE_FAILED};
use crate::helper::{exchange_calls, get, get_json, sim, web_daemon, web_daemon_with_origin};

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

// 1. routes and shapes

#[test]
fn cors_only_for_allowed_origins_and_never_star() {
    let sim = sim();
    let (d, allowed) = web_daemon_with_origin(&sim);
    let vary_has_origin = |reply: &HttpReply| {
        reply.header_all("vary").iter().any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("origin"))
        })
    };
    let no_star = |reply: &HttpReply| {
        for value in reply.header_all("access-control-allow-origin") {
            assert_ne!(value.trim(), "*", "never Access-Control-Allow-Origin: *");
        }
    };

    // Allowed origin: reads, preflight, cross-origin POST.
    let reply = d.http("GET", "/api/token/status", &[("Origin", &allowed)], b"");
    assert_eq!(reply.status, 200);
    assert_eq!(
        header(&reply, "access-control-allow-origin"),
        Some(allowed.as_str())
    );
    assert!(vary_has_origin(&reply), "{:?}", reply.headers);
    assert!(header(&reply, "access-control-allow-credentials").is_none());
    let preflight = d.http(
        "OPTIONS",
        "/api/token/generate-access-token",
        &[
            ("Origin", &allowed),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert!(
        preflight.status == 204 || preflight.status == 200,
        "preflight: {} {}",
        preflight.status,
        preflight.text()
    );
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        Some(allowed.as_str())
    );
    let methods = header(&preflight, "access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let allow_headers = header(&preflight, "access-control-allow-headers").unwrap_or("");
    assert!(allow_headers.to_ascii_lowercase().contains("content-type"));
    assert!(vary_has_origin(&preflight));
    let reply = post_json_raw(
        &d,
        "/api/token/generate-access-token",
        &[("Origin", &allowed)],
        json!({"request_token": sim.issue_request_token()})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        header(&reply, "access-control-allow-origin"),
        Some(allowed.as_str())
    );
    assert_eq!(exchange_calls(&sim), 1);

    // Disallowed origins: no ACAO, preflight 403, POST 403 before anything reaches Kite.
    let port = d.http_addr().port();
    let disallowed = [
        "http://evil.example".to_string(),
        format!("http://127.0.0.1:{}", free_port()),
        format!("{allowed}.evil.example"),
        format!("{allowed}/"),
        allowed.replace("127.0.0.1", "localhost"),
        allowed.replace("http:", "https:"),
        "null".to_string(),
        format!("http://127.0.0.1:{port}@evil.example"),
    ];
    for origin in &disallowed {
        let reply = d.http("GET", "/api/token/status", &[("Origin", origin)], b"");
        assert!(
            header(&reply, "access-control-allow-origin").is_none(),
            "GET from {origin}: {:?}",
            reply.headers
        );
        let preflight = d.http(
            "OPTIONS",
            "/api/token/generate-access-token",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        );
        assert_eq!(preflight.status, 403, "preflight from {origin}");
        assert!(header(&preflight, "access-control-allow-origin").is_none());
        let token = sim.issue_request_token();
        let reply = post_json_raw(
            &d,
            "/api/token/generate-access-token",
            &[("Origin", origin)],
            json!({ "request_token": token }).to_string().as_bytes(),
        );
        assert_detail(&reply, 403, &["origin"]);
        assert!(header(&reply, "access-control-allow-origin").is_none());
        no_star(&reply);
    }
    assert_eq!(exchange_calls(&sim), 1, "no disallowed origin reached Kite");

    // kited's own page (same origin) may POST, under either of its names.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let origin = format!("http://{host}");
        let reply = post_json_raw(
            &d,
            "/api/token/generate-access-token",
            &[("Origin", &origin), ("Host", &host)],
            json!({"request_token": sim.issue_request_token()})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(
            reply.status,
            200,
            "same-origin POST via {host}: {}",
            reply.text()
        );
    }
    // No route ever answers `*`.
    for path in [
        "/",
        "/api/token/status",
        "/static/kite-token-flow.js",
        "/healthz",
        "/nope",
    ] {
        for origin in [allowed.as_str(), "http://evil.example"] {
            no_star(&d.http("GET", path, &[("Origin", origin)], b""));
        }
    }
}

#[test]
fn html_has_strict_security_headers_and_no_inline_code() {
    let sim = sim();
    let d = web_daemon(&sim);
    let check = |what: &str, reply: &HttpReply| {
        let csp =
            header(reply, "content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
        assert!(!csp.contains('*'), "{what}: {csp}");
        assert_eq!(header(reply, "x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(
            header(reply, "referrer-policy"),
            Some("no-referrer"),
            "{what}"
        );
        assert_eq!(
            header(reply, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(reply.media_type().as_deref(), Some("text/html"), "{what}");
        // Nothing the CSP would block: inline scripts, handlers, inline styles.
        let html = reply.text().to_ascii_lowercase();
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "{what}: inline script {tag}");
        }
        assert!(!html.contains("<style"), "{what}: inline <style>");
        assert!(!html.contains(" style="), "{what}: style attribute");
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!html.contains(handler), "{what}: {handler}");
        }
    };
    check("GET /", &get(&d, "/"));
    check(
        "failed callback",
        &get(&d, "/auth/callback?status=cancelled"),
    );
    let info = get_json(&d, "/api/token/refresh-info");
    let login = http_client::get(info["login_url"].as_str().unwrap()).unwrap();
    let location = login.header("location").unwrap().to_string();
    let reply = http_client::get(&location).unwrap();
    assert_eq!(reply.status, 200);
    check("successful callback", &reply);
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
}

#[test]
fn request_token_injection_is_refused_and_escaped() {
    let sim = sim();
    let d = web_daemon(&sim);
    let script = "<script>alert(1)</script>";
    let fresh_state = || {
        let info = get_json(&d, "/api/token/refresh-info");
        let url = url::Url::parse(info["login_url"].as_str().unwrap()).unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "redirect_params")
            .map(|(_, v)| v.trim_start_matches("state=").to_string())
            .unwrap()
    };
    let evil = url_encode(script);
    let attempts = [
        format!(
            "/auth/callback?action=login&status=success&state={}&request_token={evil}",
            fresh_state()
        ),
        format!("/auth/callback?status=success&request_token={evil}"),
        format!("/auth/callback?status={evil}&request_token=abc"),
        format!("/auth/callback?status=success&state={evil}&request_token=abc"),
        format!(
            "/auth/callback?status=success&state={}&request_token={}",
            fresh_state(),
            url_encode("\"><img src=x onerror=alert(1)>")
        ),
    ];
    for path in &attempts {
        let reply = get(&d, path);
        assert_eq!(reply.status, 400, "{path}: {}", reply.text());
        let html = reply.text();
        assert!(html.contains("Login failed"), "{path}: {html}");
        assert!(
            !html.contains("<script>alert"),
            "{path} reflected markup: {html}"
        );
        assert!(
            !html.contains("<img src=x"),
            "{path} reflected markup: {html}"
        );
        assert!(header(&reply, "content-security-policy").is_some());
    }
    // Where the page does quote what it got, it is escaped.
    let reply = get(
        &d,
        &format!("/auth/callback?status={evil}&request_token=abc"),
    );
    assert!(reply.text().contains("&lt;script&gt;"), "{}", reply.text());

    // The paste path (JSON API): refused, answered as JSON (never HTML).
    for pasted in [
        script.to_string(),
        format!("{}?status=success&request_token={script}", d.callback_url()),
        format!("{}?status=success&request_token={evil}", d.callback_url()),
        "abc\"><svg onload=alert(1)>".to_string(),
    ] {
        let reply = generate(&d, &json!({ "request_token": pasted }));
        assert_detail(&reply, 400, &[GENERATE_FAILED]);
    }
    let page = get(&d, &format!("/?request_token={evil}"));
    assert_eq!(
        page.text(),
        get(&d, "/").text(),
        "the page never reflects its query"
    );
    assert_eq!(exchange_calls(&sim), 0, "nothing reached Kite");
}
