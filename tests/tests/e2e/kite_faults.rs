//! Kite's faults (errors, hangs, garbage): clear errors, nothing stored, an exchange never retried.

use std::thread;
use std::time::{Duration, Instant};

use kite_tests::{Daemon, Fault};
use serde_json::json;

use crate::helper::socket::{assert_alive, exchange_in_background, ping_fast, PING_LIMIT};
use crate::helper::{login_headless, new_tokens, served_token, sim, the_new_token};

#[test]
fn kite_faults_give_clear_errors_store_nothing_and_never_retry_an_exchange() {
    let sim = sim();
    let mut daemon = Daemon::builder(&sim)
        .config_toml("[kite]\ntimeout = \"2s\"\n[notify]\ndesktop = false\n")
        .start();
    let pid = daemon.pid();
    let mut current = login_headless(&daemon);

    let faults = [
        ("503", Fault::Status(503)),
        ("429 with Retry-After", Fault::Status(429)),
        ("500", Fault::Status(500)),
        ("non-JSON body", Fault::NonJson),
        ("truncated body", Fault::Truncated),
        ("hang", Fault::Hang),
        ("wrong content type", Fault::WrongContentType),
    ];
    for (name, fault) in faults {
        sim.clear_calls();
        sim.set_fault(1, fault);
        let before = sim.valid_access_tokens();
        let request_token = sim.issue_request_token();
        let started = Instant::now();
        let call = exchange_in_background(daemon.socket_path(), &request_token);
        // While the faulty call is in flight, other clients are served at once.
        let mut served_meanwhile = 0;
        let deadline = Instant::now() + Duration::from_secs(12);
        while !call.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{name}: the exchange never ended"
            );
            ping_fast(&daemon);
            let start = Instant::now();
            assert_eq!(served_token(&daemon), Some(current.clone()), "{name}");
            assert!(
                start.elapsed() < PING_LIMIT,
                "{name}: get_token took {:?}",
                start.elapsed()
            );
            served_meanwhile += 1;
            thread::sleep(Duration::from_millis(50));
        }
        let took = started.elapsed();
        let answer = call
            .join()
            .expect("exchange thread")
            .unwrap_or_else(|| panic!("{name}: no answer to the exchange; log:\n{}", daemon.log()));
        // Give a (wrong) background retry the chance to show up in the call log.
        thread::sleep(Duration::from_millis(300));
        let calls = sim.calls_to("POST", "/session/token");
        assert_eq!(
            calls.len(),
            1,
            "{name}: one attempt must make exactly one POST /session/token (a request token is \
             single use): {calls:?}"
        );
        assert_eq!(
            calls[0].form_param("request_token").as_deref(),
            Some(request_token.as_str()),
            "{name}"
        );

        eprintln!("{name}: {answer} after {took:?}, {served_meanwhile} pings meanwhile");
        if fault == Fault::WrongContentType {
            // The body is Kite's genuine answer (the request token is used up and the session
            // exists at Kite); only the label is wrong. Refusing it would throw away a real
            // login, so kited may accept it — but then it must store exactly that session.
            if answer["ok"] == json!(true) {
                let minted = the_new_token(&sim, &before);
                assert_eq!(served_token(&daemon), Some(minted.clone()), "{name}");
                current = minted;
            } else {
                assert_eq!(served_token(&daemon), Some(current.clone()), "{name}");
            }
            continue;
        }

        assert_eq!(answer["ok"], json!(false), "{name}: {answer}");
        let kind = answer["error"]["kind"].as_str().unwrap_or("");
        let expected = match fault {
            Fault::Hang => "kite_timeout",
            _ => "kite_unavailable",
        };
        assert!(
            kind == expected || kind == "kite",
            "{name}: error kind {kind:?}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.len() > 15 && message.contains("Kite"),
            "{name}: the message should say what Kite did: {answer}"
        );
        for junk in [
            "Error {",
            "reqwest",
            "hyper::",
            "panicked",
            &sim.api_secret(),
        ] {
            assert!(
                !message.contains(junk),
                "{name}: message has {junk:?}: {message}"
            );
        }
        if let Fault::Status(code) = fault {
            assert!(message.contains(&code.to_string()), "{name}: {message}");
        }
        if fault == Fault::Hang {
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
                "{name}: kite.timeout is 2s, the exchange took {took:?}"
            );
            assert!(
                served_meanwhile >= 5,
                "{name}: only {served_meanwhile} pings meanwhile"
            );
            assert!(message.contains("did not answer"), "{name}: {message}");
        }
        // Nothing stored: the previous token is still served and still valid.
        assert_eq!(served_token(&daemon), Some(current.clone()), "{name}");
        let status = daemon.request(&json!({"op": "status"}));
        assert_eq!(
            status["status"]["state"],
            json!("valid"),
            "{name}: {status}"
        );
        assert!(new_tokens(&sim, &before).is_empty(), "{name}");
    }
    // Kite works again: the next login goes through.
    let fresh = login_headless(&daemon);
    assert_eq!(served_token(&daemon), Some(fresh));
    assert_alive(&mut daemon, pid);
}

// Hostile socket clients
