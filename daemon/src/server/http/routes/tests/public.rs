//! The public side: what the public listener, a proxy's headers and a peer off loopback may
//! reach, whatever `Host` says.

use super::*;

/// A session with `http.public_url = https://kite.example.com` and a valid token.
fn public_session() -> fixture::Fixture {
    fixture::session_with(
        true,
        Some(fixture::token(EXPIRES)),
        MORNING,
        &[("KITED_PUBLIC_URL", "https://kite.example.com")],
    )
}

/// The routes only the machine's own callers may reach, and one public route.
const LOOPBACK_ONLY: [(&str, &str); 5] = [
    ("GET", "/"),
    ("GET", "/api/token/status"),
    ("GET", "/api/token/refresh-info"),
    ("GET", "/api/token/callback-url"),
    ("POST", "/api/token/generate-access-token"),
];

fn loopback_only_request(method: &str, path: &str) -> HttpRequest {
    if method == "POST" {
        post(path, r#"{"request_token":"abc"}"#)
    } else {
        get(path)
    }
}

#[tokio::test]
async fn the_public_listener_serves_only_public_routes_whatever_the_host() {
    let f = public_session();
    for host in [
        "127.0.0.1:8079",
        "localhost:8079",
        "kite.example.com",
        "evil.example",
    ] {
        for (method, path) in LOOPBACK_ONLY {
            let mut request = loopback_only_request(method, path);
            request.listener = Listener::Public;
            request
                .headers
                .insert(header::HOST, HeaderValue::from_str(host).unwrap());
            assert_eq!(answer(&f.session, request).await.0, 404, "{host} {path}");
        }
        let mut health = get("/healthz");
        health.listener = Listener::Public;
        health
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        assert_eq!(answer(&f.session, health).await.0, 200, "{host}");
        // /login needs a ticket there, even with a loopback Host.
        let mut login = get("/login");
        login.listener = Listener::Public;
        login
            .headers
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
        assert_eq!(answer(&f.session, login).await.0, 403, "{host}");
    }
}

#[tokio::test]
async fn proxy_headers_never_reach_loopback_routes() {
    let f = public_session();
    for evidence in PROXY_EVIDENCE {
        for (method, path) in LOOPBACK_ONLY {
            // A loopback Host through a proxy: refused outright.
            let mut request = loopback_only_request(method, path);
            request
                .headers
                .insert(evidence, HeaderValue::from_static("203.0.113.9"));
            let (status, body) = answer(&f.session, request).await;
            assert_eq!(status, 421, "{evidence} {path}");
            assert!(!body.to_string().contains("AB1234"), "{body}");
            // The public host through a proxy: the public side.
            let mut request = loopback_only_request(method, path);
            request
                .headers
                .insert(evidence, HeaderValue::from_static("x"));
            request
                .headers
                .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
            assert_eq!(
                answer(&f.session, request).await.0,
                404,
                "{evidence} {path}"
            );
        }
        // /login with the public host through a proxy: the ticket is required.
        let mut login = get("/login");
        login
            .headers
            .insert(evidence, HeaderValue::from_static("x"));
        login
            .headers
            .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
        assert_eq!(answer(&f.session, login).await.0, 403, "{evidence}");
    }
    // Without public_url the same request is refused too.
    let plain = fixture::session(true, Some(fixture::token(EXPIRES)), MORNING);
    let mut request = get("/api/token/status");
    request
        .headers
        .insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    assert_eq!(answer(&plain.session, request).await.0, 421);
    // And without evidence, loopback keeps every route (the check is not blanket).
    assert_eq!(answer(&f.session, get("/api/token/status")).await.0, 200);
    assert_eq!(answer(&f.session, get("/login")).await.0, 303);
}

#[tokio::test]
async fn a_peer_off_loopback_never_reaches_loopback_routes() {
    let f = public_session();
    let remote = || {
        Arc::new(Caller::new(
            "0.0.0.0:8079".parse().unwrap(),
            "192.0.2.7:40000".parse().unwrap(),
        ))
    };
    for (method, path) in LOOPBACK_ONLY {
        let mut request = loopback_only_request(method, path);
        request.caller = remote();
        assert_eq!(answer(&f.session, request).await.0, 421, "{path}");
        let mut request = loopback_only_request(method, path);
        request.caller = remote();
        request
            .headers
            .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
        assert_eq!(answer(&f.session, request).await.0, 404, "{path}");
    }
    let mut callback = get("/auth/callback?status=cancelled");
    callback.caller = remote();
    callback
        .headers
        .insert(header::HOST, HeaderValue::from_static("kite.example.com"));
    assert_eq!(answer(&f.session, callback).await.0, 400);
}
