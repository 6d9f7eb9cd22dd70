//! What every route answers in shape: content types and `nosniff`, 404 and 405, 415 for a body
//! that is not JSON, foreign `Host`s, and a daemon without a Kite app.

use super::*;

/// A raw answer: status, headers and body text.
async fn raw(session: &Session, request: HttpRequest) -> (u16, HeaderMap, String) {
    let response = route(session, request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_page_and_its_assets_have_their_types_and_nosniff() {
    let f = fixture::session(true, None, MORNING);
    for (path, media) in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
        ("/static/kite-token-flow.js", "text/javascript"),
    ] {
        let (status, headers, _) = raw(&f.session, get(path)).await;
        assert_eq!(status, 200, "{path}");
        let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
        assert!(content_type.starts_with(media), "{path}: {content_type}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    let (_, _, js) = raw(&f.session, get("/static/kite-token-flow.js")).await;
    for name in [
        "KiteTokenFlow",
        "createTokenRefreshButton",
        "createTokenStatusIndicator",
        "ensureValidToken",
    ] {
        assert!(js.contains(name), "kite-token-flow.js lacks {name}");
    }
    // Unknown paths and wrong methods: 404 and 405, each with a detail.
    for (request, status) in [
        (get("/no/such/route"), 404),
        (post("/api/token/status", "{}"), 405),
        (post("/healthz", "{}"), 405),
        (get("/api/token/generate-access-token"), 405),
    ] {
        let (got, body) = answer(&f.session, request).await;
        assert_eq!(got, status);
        assert!(body["detail"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_post_needs_a_json_content_type() {
    let f = fixture::session(true, None, MORNING);
    let path = "/api/token/generate-access-token";
    let body = r#"{"request_token":"abcdef0123456789"}"#;
    let form = "request_token=abcdef0123456789";
    for (content_type, body) in [
        (None, body),
        (Some("text/plain"), body),
        (Some("text/plain;charset=UTF-8"), body),
        (Some("application/x-www-form-urlencoded"), form),
        (Some("multipart/form-data; boundary=x"), body),
        (Some("application/jsonp"), body),
    ] {
        let mut request = post(path, body);
        match content_type {
            Some(value) => request
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(value)),
            None => request.headers.remove(header::CONTENT_TYPE),
        };
        let (status, answer) = answer(&f.session, request).await;
        assert_eq!(status, 415, "{content_type:?}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            detail.starts_with("Failed to generate access token: ")
                && detail.contains("application/json"),
            "{content_type:?}: {detail}"
        );
    }
    // A charset parameter is fine: the request goes on to Kite (a closed port here, so it
    // fails there, but not for its type).
    let mut request = post(path, body);
    request.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let (status, answer) = answer(&f.session, request).await;
    assert_ne!(status, 415, "{answer}");
    assert!(
        !answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("application/json"),
        "{answer}"
    );
}

#[tokio::test]
async fn hosts_that_are_not_this_server_get_no_data() {
    let f = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
    let with_host = |mut request: HttpRequest, host: &str| {
        request
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        request
    };
    for host in [
        "evil.com:8079",
        "evil.com",
        "127.0.0.1:8080",
        "localhost:8080",
        "127.0.0.1:8079.evil.com",
        "evil.127.0.0.1:8079",
        "127.0.0.1",
        "localhost",
    ] {
        for request in [
            get("/api/token/status"),
            get("/"),
            post(
                "/api/token/generate-access-token",
                r#"{"request_token":"abcdef0123456789"}"#,
            ),
            get("/auth/callback?action=login&status=success&state=s&request_token=abc"),
        ] {
            let path = request.path.clone();
            let (status, _, body) = raw(&f.session, with_host(request, host)).await;
            assert!((400..500).contains(&status), "Host {host} {path}: {status}");
            assert!(!body.contains("AB1234"), "Host {host} {path} got data");
        }
    }
    let mut no_host = get("/api/token/status");
    no_host.headers.remove(header::HOST);
    assert_eq!(answer(&f.session, no_host).await.0, 421);
    for host in ["localhost:8079", "127.0.0.1:8079"] {
        let (status, body) = answer(&f.session, with_host(get("/api/token/status"), host)).await;
        assert_eq!(status, 200, "Host {host}");
        assert_eq!(body["user_id"], "AB1234");
    }
}

#[tokio::test]
async fn not_configured_answers_503_naming_what_is_missing() {
    let f = fixture::session(false, None, MORNING);
    let (status, body) = answer(&f.session, get("/api/token/status")).await;
    assert_eq!(status, 200);
    assert_eq!(body["configured"], false);
    assert_eq!(body["state"], "none");
    assert_eq!(body["valid"], false);
    assert_eq!(body["needs_refresh"], true);
    let (status, body) = answer(&f.session, get("/api/token/refresh-info")).await;
    assert_eq!(status, 503);
    assert!(
        body["detail"].as_str().unwrap().contains("KITE_API_KEY"),
        "{body}"
    );
    let (status, body) = answer(
        &f.session,
        post(
            "/api/token/generate-access-token",
            r#"{"request_token":"abcdef0123456789"}"#,
        ),
    )
    .await;
    assert_eq!(status, 503);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Failed to generate access token: ") && detail.contains("KITE_API_KEY"),
        "{detail}"
    );
    assert_eq!(answer(&f.session, get("/healthz")).await.0, 200);
    assert_eq!(
        answer(&f.session, get("/api/token/callback-url")).await.0,
        200
    );
}
