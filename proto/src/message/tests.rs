//! The protocol's unit and property tests: every request and answer in its documented wire form
//! and round-tripping as its own type, garbage refused as `bad_request`, tokens redacted in
//! `Debug`, and no input that makes parsing panic.

use super::*;
use crate::error::ErrorKind;
use crate::status::TokenState;
use proptest::prelude::*;
use serde_json::json;

/// What a daemon without a Kite app reports.
fn sample_status() -> TokenStatus {
    TokenStatus {
        configured: false,
        state: TokenState::None,
        valid: false,
        needs_refresh: true,
        user_id: None,
        user_name: None,
        login_time: None,
        expires_at: None,
        seconds_left: None,
        profile: "dev".into(),
        api_key: None,
        invalidated_reason: None,
        store_error: None,
        env_file_error: None,
        pinned_user_id: None,
        sinks: vec![],
        hint: "Set KITE_API_KEY.".into(),
    }
}

/// One request of each type with an answer of its type, and both exact wire forms. The
/// match has no wildcard: a new request type does not compile until it is listed here.
fn wire_cases() -> Vec<(Request, serde_json::Value, String, serde_json::Value)> {
    let status = serde_json::to_value(sample_status()).unwrap();
    let requests: Vec<Request> = vec![
        Ping {}.into(),
        Status {}.into(),
        GetToken { wait_secs: None }.into(),
        GetToken {
            wait_secs: Some(30),
        }
        .into(),
        LoginUrl {}.into(),
        LoginLink {}.into(),
        PushTest {}.into(),
        Doctor {}.into(),
        RevokeLinks {}.into(),
        Exchange {
            request_token: Some("abc".into()),
            callback_url: None,
        }
        .into(),
        Exchange {
            request_token: None,
            callback_url: Some("http://127.0.0.1:8079/auth/callback?x=1".into()),
        }
        .into(),
        Logout {}.into(),
        Watch {}.into(),
        Shutdown {}.into(),
    ];
    requests
        .into_iter()
        .map(|request| {
            let (wire, answer, answer_wire) = match &request {
                Request::Ping(_) => (
                    json!({"op": "ping"}),
                    answer_line::<Pong>(&Ok(Pong {
                        version: "0.1.0".into(),
                    })),
                    json!({"ok": true, "version": "0.1.0"}),
                ),
                Request::Status(_) => (
                    json!({"op": "status"}),
                    answer_line::<StatusReport>(&Ok(StatusReport {
                        status: sample_status(),
                    })),
                    json!({"ok": true, "status": status}),
                ),
                Request::GetToken(GetToken { wait_secs }) => (
                    match wait_secs {
                        Some(w) => json!({"op": "get_token", "wait_secs": w}),
                        None => json!({"op": "get_token"}),
                    },
                    answer_line::<IssuedToken>(&Ok(IssuedToken {
                        access_token: "tok".into(),
                        api_key: "key".into(),
                        expires_at: "2026-11-24T06:00:00+05:30".into(),
                    })),
                    json!({"ok": true, "access_token": "tok", "api_key": "key",
                           "expires_at": "2026-11-24T06:00:00+05:30"}),
                ),
                Request::LoginUrl(_) => (
                    json!({"op": "login_url"}),
                    answer_line::<LoginUrls>(&Ok(LoginUrls {
                        login_url: "https://kite/login?v=3".into(),
                        callback_url: "http://127.0.0.1:8079/auth/callback".into(),
                    })),
                    json!({"ok": true, "login_url": "https://kite/login?v=3",
                           "callback_url": "http://127.0.0.1:8079/auth/callback"}),
                ),
                Request::LoginLink(_) => (
                    json!({"op": "login_link"}),
                    answer_line::<IssuedLink>(&Ok(IssuedLink {
                        link: "https://kite.example.com/login?t=1-ab".into(),
                        expires_at: "2026-11-24T06:00:00+05:30".into(),
                    })),
                    json!({"ok": true, "link": "https://kite.example.com/login?t=1-ab",
                           "expires_at": "2026-11-24T06:00:00+05:30"}),
                ),
                Request::PushTest(_) => (
                    json!({"op": "push_test"}),
                    answer_line::<PushResults>(&Ok(PushResults {
                        results: vec![
                            PushResult {
                                channel: "telegram".into(),
                                ok: true,
                                error: None,
                            },
                            PushResult {
                                channel: "ntfy".into(),
                                ok: false,
                                error: Some("HTTP 401: unauthorized".into()),
                            },
                        ],
                    })),
                    json!({"ok": true, "results": [
                        {"channel": "telegram", "ok": true},
                        {"channel": "ntfy", "ok": false, "error": "HTTP 401: unauthorized"},
                    ]}),
                ),
                Request::Doctor(_) => (
                    json!({"op": "doctor"}),
                    answer_line::<DoctorReport>(&Ok(DoctorReport {
                        checks: vec![crate::event::Check::failed(
                            "ip",
                            "this host sends from 198.51.100.9, registered: 203.0.113.7",
                        )],
                    })),
                    json!({"ok": true, "checks": [{"name": "ip", "ok": false,
                        "detail": "this host sends from 198.51.100.9, registered: 203.0.113.7"}]}),
                ),
                Request::Exchange(Exchange {
                    request_token,
                    callback_url,
                }) => (
                    match (request_token, callback_url) {
                        (Some(t), _) => json!({"op": "exchange", "request_token": t}),
                        (_, Some(u)) => json!({"op": "exchange", "callback_url": u}),
                        _ => json!({"op": "exchange"}),
                    },
                    answer_line::<StatusReport>(&Ok(StatusReport {
                        status: sample_status(),
                    })),
                    json!({"ok": true, "status": status}),
                ),
                Request::RevokeLinks(_) => (
                    json!({"op": "revoke_links"}),
                    answer_line::<Ack>(&Ok(Ack {})),
                    json!({"ok": true}),
                ),
                Request::Logout(_) => (
                    json!({"op": "logout"}),
                    answer_line::<Ack>(&Ok(Ack {})),
                    json!({"ok": true}),
                ),
                Request::Watch(_) => (
                    json!({"op": "watch"}),
                    answer_line::<Ack>(&Ok(Ack {})),
                    json!({"ok": true}),
                ),
                Request::Shutdown(_) => (
                    json!({"op": "shutdown"}),
                    answer_line::<Ack>(&Ok(Ack {})),
                    json!({"ok": true}),
                ),
            };
            (request, wire, answer, answer_wire)
        })
        .collect()
}

#[test]
fn every_request_and_answer_has_the_contract_wire_form() {
    for (request, wire, answer, answer_wire) in wire_cases() {
        let line = request.to_line();
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let sent: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(sent, wire, "{request:?}");
        assert_eq!(Request::parse(wire.to_string().as_bytes()), Ok(request));
        assert!(answer.ends_with('\n') && !answer.trim_end().contains('\n'));
        let got: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(got, answer_wire);
    }
}

/// Sends `answer` as the daemon would and reads it back as the client would.
fn round_trip<C: Call>(answer: C::Answer) -> C::Answer {
    parse_answer::<C::Answer>(answer_line::<C::Answer>(&Ok(answer)).as_bytes())
        .unwrap()
        .unwrap()
}

#[test]
fn every_answer_round_trips_as_its_own_type() {
    let pong = Pong {
        version: "1.2.3".into(),
    };
    assert_eq!(round_trip::<Ping>(pong.clone()), pong);
    let report = StatusReport {
        status: sample_status(),
    };
    assert_eq!(round_trip::<Status>(report.clone()), report);
    assert_eq!(round_trip::<Exchange>(report.clone()), report);
    let token = IssuedToken {
        access_token: "a".into(),
        api_key: "k".into(),
        expires_at: "t".into(),
    };
    assert_eq!(round_trip::<GetToken>(token.clone()), token);
    let urls = LoginUrls {
        login_url: "l".into(),
        callback_url: "c".into(),
    };
    assert_eq!(round_trip::<LoginUrl>(urls.clone()), urls);
    let link = IssuedLink {
        link: "https://k.example/login?t=1-ab".into(),
        expires_at: "t".into(),
    };
    assert_eq!(round_trip::<LoginLink>(link.clone()), link);
    let results = PushResults {
        results: vec![PushResult {
            channel: "ntfy".into(),
            ok: false,
            error: Some("no answer within 10s".into()),
        }],
    };
    assert_eq!(round_trip::<PushTest>(results.clone()), results);
    assert_eq!(round_trip::<Logout>(Ack {}), Ack {});
    assert_eq!(round_trip::<Watch>(Ack {}), Ack {});
    assert_eq!(round_trip::<Shutdown>(Ack {}), Ack {});
}

#[test]
fn failures_round_trip_whatever_the_answer_type() {
    let error = WireError::new(ErrorKind::LoginRequired, "log in");
    let line = answer_line::<IssuedToken>(&Err(error.clone()));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&line).unwrap(),
        json!({"ok": false, "error": {"kind": "login_required", "message": "log in"}})
    );
    assert_eq!(
        parse_answer::<IssuedToken>(line.as_bytes()),
        Ok(Err(error.clone()))
    );
    assert_eq!(parse_answer::<Ack>(line.as_bytes()), Ok(Err(error)));
}

#[test]
fn answers_of_the_wrong_shape_are_refused() {
    for (line, what) in [
        (&b"not json"[..], "invalid JSON"),
        (b"[1]", "not an answer"),
        (b"{\"version\":\"1\"}", "not an answer"),
        (b"{\"ok\":true}", "wrong shape"),
        (b"{\"ok\":true,\"access_token\":\"a\"}", "wrong shape"),
        (b"{\"ok\":false}", "without an error"),
    ] {
        let err = parse_answer::<IssuedToken>(line).unwrap_err();
        assert!(err.contains(what), "{line:?}: {err}");
    }
    // An ok answer with more fields than the client knows is fine (a newer daemon).
    let newer = br#"{"ok":true,"version":"9","features":["x"]}"#;
    assert_eq!(
        parse_answer::<Pong>(newer),
        Ok(Ok(Pong {
            version: "9".into()
        }))
    );
}

#[test]
fn rejects_garbage_as_bad_request() {
    for (line, what) in [
        (&b"not json"[..], "not valid JSON"),
        (b"[1,2]", "bad request"),
        (b"{}", "op"),
        (b"{\"op\":1}", "bad request"),
        (
            b"{\"op\":\"fly\"}",
            "unknown variant `fly`, expected one of `ping`",
        ),
        (
            b"{\"op\":\"get_token\",\"wait_secs\":\"soon\"}",
            "bad request",
        ),
        (b"{\"op\":\"get_token\",\"wait_secs\":-1}", "bad request"),
        (b"\xff\xfe", "UTF-8"),
    ] {
        let err = Request::parse(line).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadRequest, "{line:?}");
        assert!(err.message.contains(what), "{line:?}: {}", err.message);
    }
}

#[test]
fn debug_redacts_the_token() {
    let token = IssuedToken {
        access_token: "SECRETTOKEN".into(),
        api_key: "k".into(),
        expires_at: "t".into(),
    };
    assert!(!format!("{token:?}").contains("SECRETTOKEN"));
    let answer: Answer<IssuedToken> = Ok(token);
    assert!(!format!("{answer:?}").contains("SECRETTOKEN"));
    let link = IssuedLink {
        link: "https://k.example/login?t=SECRETTICKET".into(),
        expires_at: "t".into(),
    };
    assert!(!format!("{link:?}").contains("SECRETTICKET"));
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Ping {}.into()),
        Just(Status {}.into()),
        Just(LoginUrl {}.into()),
        Just(LoginLink {}.into()),
        Just(PushTest {}.into()),
        Just(Logout {}.into()),
        Just(Watch {}.into()),
        Just(Shutdown {}.into()),
        proptest::option::of(any::<u64>()).prop_map(|wait_secs| GetToken { wait_secs }.into()),
        (
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<String>())
        )
            .prop_map(|(request_token, callback_url)| Exchange {
                request_token,
                callback_url
            }
            .into()),
    ]
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Request::parse(&bytes);
        let _ = parse_answer::<StatusReport>(&bytes);
    }

    #[test]
    fn invalid_utf8_is_always_refused(
        prefix in "[ -~]{0,40}",
        bad in proptest::sample::select(vec![0x80u8, 0xbf, 0xc0, 0xc1, 0xed, 0xf5, 0xff]),
        suffix in "[ -~]{0,40}",
    ) {
        // Valid JSON around one bad byte (inside a string, where a lossy decoder would
        // happily turn it into U+FFFD and accept the request).
        let clean = |s: &str| s.replace(['"', '\\'], "");
        let mut line = format!("{{\"op\":\"ping\",\"x\":\"{}", clean(&prefix)).into_bytes();
        line.push(bad);
        line.extend_from_slice(clean(&suffix).as_bytes());
        line.extend_from_slice(b"\"}");
        let err = Request::parse(&line).unwrap_err();
        prop_assert_eq!(err.kind, ErrorKind::BadRequest);
    }

    #[test]
    fn requests_round_trip_as_one_line(request in any_request()) {
        let line = request.to_line();
        let body = line.strip_suffix('\n').expect("a line ends with a newline");
        prop_assert!(!body.contains('\n'), "{:?}", line);
        prop_assert_eq!(Request::parse(body.as_bytes()), Ok(request));
    }

    #[test]
    fn parse_json_shaped_input(op in "[a-z_]{0,12}", extra in "[ -~]{0,40}") {
        let line = format!("{{\"op\":\"{op}\",\"x\":\"{}\"}}", extra.replace(['"', '\\'], ""));
        match Request::parse(line.as_bytes()) {
            // Only the ops the enum declares parse, and they keep their name.
            Ok(request) => {
                let back: serde_json::Value = serde_json::from_str(&request.to_line()).unwrap();
                prop_assert_eq!(back["op"].as_str(), Some(op.as_str()));
            }
            Err(e) => prop_assert_eq!(e.kind, ErrorKind::BadRequest),
        }
    }
}
