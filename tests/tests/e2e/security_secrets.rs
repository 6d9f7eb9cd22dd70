//! Attacks on the secrets: the api secret and the token never appear in logs, error messages or pages.

use std::process::Output;

use kite_tests::{follow_browser_login, Daemon};

use crate::helper::ctl::{ctl_get_token, stderr, stdout};
use crate::helper::http::GET_ROUTES;
use crate::helper::sim;
use serde_json::json;

#[test]
fn secret_and_token_never_appear_in_logs_errors_or_pages() {
    let sim = sim();
    let daemon = Daemon::start(&sim);
    let secret = sim.api_secret();
    let mut seen: Vec<(String, String)> = Vec::new();
    let run = |seen: &mut Vec<(String, String)>, args: &[&str], include_stdout: bool| -> Output {
        let out = daemon.ctl(args);
        seen.push((format!("stderr of kitectl {args:?}"), stderr(&out)));
        if include_stdout {
            seen.push((format!("stdout of kitectl {args:?}"), stdout(&out)));
        }
        out
    };

    run(&mut seen, &["status"], true);
    run(&mut seen, &["get-token"], true);
    let out = run(&mut seen, &["login"], true);
    let url = stdout(&out).trim().to_string();
    let (status, page) = follow_browser_login(&daemon, &url);
    assert_eq!(status, 200, "{page}");
    seen.push(("callback page".into(), page));
    let token = sim.valid_access_tokens().pop().expect("a token");

    let got = run(&mut seen, &["get-token"], false);
    assert_eq!(stdout(&got).trim(), token);
    run(&mut seen, &["status"], true);
    run(&mut seen, &["status", "--json"], true);
    run(&mut seen, &["get-token", "--json"], false);
    run(&mut seen, &["env"], false);
    // An error path: a reused request token, and a bad callback.
    let request_token = sim.issue_request_token();
    run(&mut seen, &["exchange", &request_token], false);
    run(&mut seen, &["exchange", &request_token], true);
    for path in GET_ROUTES {
        let (_, headers, body) = daemon.http_get(path);
        seen.push((format!("GET {path}"), body));
        seen.push((format!("headers of GET {path}"), format!("{headers:?}")));
    }
    let token2 = ctl_get_token(&daemon);
    run(&mut seen, &["logout"], true);
    run(&mut seen, &["get-token"], true);
    run(&mut seen, &["status", "--json"], true);

    seen.push(("kited log".into(), daemon.log()));
    for (what, text) in &seen {
        assert!(
            !text.contains(&secret),
            "{what} contains the api secret:\n{text}"
        );
        for t in [&token, &token2] {
            assert!(
                !text.contains(t.as_str()),
                "{what} contains an access token:\n{text}"
            );
        }
    }
    // The socket answers carry no secret either.
    let status = daemon.request(&json!({"op": "status"}));
    assert!(!status.to_string().contains(&secret), "{status}");
}

// 14. get-token --wait
