//! The HTTP generate route: success fields, honest failures, and every route mapping a failure to the same status.

use std::time::{Duration, Instant};

use kite_tests::harness::free_port;
use kite_tests::{follow_browser_login, Daemon, Fault};
use serde_json::json;

use crate::helper::http::{assert_detail, generate, header, post_json_raw, GENERATE_FAILED};
use crate::helper::{
    ctl_token, exchange_calls, fresh_states, get_json, sim, web_config, web_daemon,
};

#[test]
fn generate_success_has_every_seed_field_and_stores_the_token() {
    let sim = sim();
    let d = web_daemon(&sim);
    let request_token = sim.issue_request_token();
    let reply = generate(&d, &json!({ "request_token": request_token }));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["success"], true);
    let access_token = body["access_token"].as_str().expect("access_token");
    assert!(!access_token.is_empty());
    assert_eq!(sim.valid_access_tokens(), vec![access_token.to_string()]);
    assert_eq!(body["user_id"], "AB1234");
    assert_eq!(body["user_name"], "Kite Tester");
    assert_eq!(body["user_shortname"], "Kite");
    assert_eq!(body["email"], "ab1234@example.com");
    assert_eq!(body["user_type"], "individual");
    assert_eq!(body["broker"], "ZERODHA");
    for (key, member) in [
        ("exchanges", "NSE"),
        ("products", "CNC"),
        ("order_types", "LIMIT"),
    ] {
        let list = body[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {body}"));
        assert!(list.contains(&json!(member)), "{key}: {body}");
    }
    for key in ["message", "instructions"] {
        assert!(
            body[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key}: {body}"
        );
    }
    // One call to Kite, with this request token; the daemon stored what Kite issued.
    let calls = sim.calls_to("POST", "/session/token");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].form_param("request_token").as_deref(),
        Some(request_token.as_str())
    );
    assert_eq!(ctl_token(&d), access_token);
    let status = get_json(&d, "/api/token/status");
    assert!(fresh_states().contains(&status["state"].as_str().unwrap()));
    assert_eq!(status["user_name"], "Kite Tester");

    // The whole redirected URL is accepted as well (what people paste).
    let pasted = format!(
        "{}?action=login&type=login&status=success&request_token={}",
        d.callback_url(),
        sim.issue_request_token()
    );
    let reply = generate(&d, &json!({ "request_token": pasted }));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let second = reply.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, access_token);
    assert_eq!(ctl_token(&d), second);
}

#[test]
fn generate_failures_are_honest() {
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&web_config("[kite]\ntimeout = \"1s\"\n"))
        .start();
    let post = |body: &[u8]| post_json_raw(&d, "/api/token/generate-access-token", &[], body);

    // Malformed requests: 400, and nothing reaches Kite.
    assert_detail(
        &post(b"{}"),
        400,
        &[GENERATE_FAILED, "request_token is required"],
    );
    assert_detail(
        &post(br#"{"request_token": null}"#),
        400,
        &[GENERATE_FAILED, "required"],
    );
    assert_detail(
        &post(br#"{"request_token": ""}"#),
        400,
        &[GENERATE_FAILED, "empty"],
    );
    assert_detail(
        &post(br#"{"request_token": "   "}"#),
        400,
        &[GENERATE_FAILED, "empty"],
    );
    assert_detail(
        &post(br#"{"request_token": 42}"#),
        400,
        &[GENERATE_FAILED, "string"],
    );
    assert_detail(&post(b"request_token=abc"), 400, &[GENERATE_FAILED, "JSON"]);
    assert_detail(&post(b""), 400, &[GENERATE_FAILED, "JSON"]);
    assert_detail(&post(b"[1,2"), 400, &[GENERATE_FAILED, "JSON"]);
    assert_detail(
        &post(br#"{"request_token": "has spaces and / slashes"}"#),
        400,
        &[GENERATE_FAILED],
    );
    assert_eq!(
        exchange_calls(&sim),
        0,
        "malformed requests never reach Kite"
    );

    // Kite refuses a reused request token: 400 with Kite's own words.
    let token = sim.issue_request_token();
    let ok = generate(&d, &json!({ "request_token": token }));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        400,
        &[GENERATE_FAILED, "Token is invalid or has expired."],
    );
    // And one Kite never issued.
    assert_detail(
        &generate(
            &d,
            &json!({"request_token": "NeverIssuedByKite0123456789abcdef"}),
        ),
        400,
        &[GENERATE_FAILED, "Token is invalid or has expired."],
    );
    assert_eq!(exchange_calls(&sim), 3);

    // Kite down (503): 502, and the request token is not lost (it works once Kite is back).
    let token = sim.issue_request_token();
    sim.fail_next(1, 503);
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        502,
        &[GENERATE_FAILED, "unavailable", "503"],
    );
    sim.fail_next(1, 429);
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        502,
        &[GENERATE_FAILED, "429"],
    );
    sim.set_fault(1, Fault::NonJson);
    assert_detail(
        &generate(&d, &json!({ "request_token": token })),
        502,
        &[GENERATE_FAILED],
    );
    let ok = generate(&d, &json!({ "request_token": token }));
    assert_eq!(ok.status, 200, "{}", ok.text());

    // Kite hangs: 504 within kite.timeout (1 s here), not a hung request.
    let token = sim.issue_request_token();
    sim.set_fault(1, Fault::Hang);
    let started = Instant::now();
    let reply = generate(&d, &json!({ "request_token": token }));
    let took = started.elapsed();
    assert_detail(&reply, 504, &[GENERATE_FAILED, "did not answer"]);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "504 after {took:?}"
    );
    // Unreachable Kite at all: a daemon pointed at a closed port answers 502.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let lonely = Daemon::builder(&sim)
        .config_toml(&web_config("[kite]\ntimeout = \"2s\"\n"))
        .env("KITE_API_ROOT", &closed)
        .keep_redirect()
        .start();
    assert_detail(
        &generate(
            &lonely,
            &json!({ "request_token": sim.issue_request_token() }),
        ),
        502,
        &[GENERATE_FAILED, "reach Kite"],
    );
}

/// The same failure gets the same status on every route (one table from error kind to HTTP
/// status): a Kite that does not answer is 504 and a login as the wrong user 403, whether the
/// browser's callback or the JSON API met it; the socket names the same kinds.
#[test]
fn every_route_maps_a_failure_to_the_same_status() {
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&web_config(
            "[kite]\ntimeout = \"1s\"\nuser_id = \"ZZ9999\"\n",
        ))
        .start();
    let callback = |d: &Daemon| {
        let answer = d.request(&json!({"op": "login_url"}));
        follow_browser_login(d, answer["login_url"].as_str().unwrap())
    };

    // Kite hangs.
    sim.set_fault(1, Fault::Hang);
    let (status, page) = callback(&d);
    assert_eq!(status, 504, "callback page: {page}");
    sim.set_fault(1, Fault::Hang);
    let reply = generate(&d, &json!({ "request_token": sim.issue_request_token() }));
    assert_detail(&reply, 504, &[GENERATE_FAILED, "did not answer"]);
    sim.set_fault(1, Fault::Hang);
    let answer = d.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["error"]["kind"], "kite_timeout", "{answer}");

    // A real login, as somebody else than kite.user_id.
    let (status, page) = callback(&d);
    assert_eq!(status, 403, "callback page: {page}");
    assert!(page.contains("ZZ9999"), "{page}");
    let reply = generate(&d, &json!({ "request_token": sim.issue_request_token() }));
    assert_detail(&reply, 403, &[GENERATE_FAILED, "ZZ9999"]);
    let answer = d.request(&json!({"op": "exchange", "request_token": sim.issue_request_token()}));
    assert_eq!(answer["error"]["kind"], "wrong_user", "{answer}");
}
