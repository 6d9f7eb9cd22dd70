//! Attacks on the secrets: the api secret and the token appear nowhere kited writes.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use kite_tests::harness::{eventually, follow_browser_login};
use kite_tests::http_client;
use kite_tests::Daemon;
use serde_json::json;

use crate::helper::http::GET_ROUTES;
use crate::helper::socket::{connect, contains, exchange, read_line};
use crate::helper::{served_token, sim, the_new_token, toml_string};

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_under(&path, out);
        } else if meta.is_file() {
            out.push(path);
        }
    }
}

#[test]
fn secrets_appear_nowhere_kited_writes() {
    let sim = sim();
    let secret = sim.api_secret();
    let extra = tempfile::tempdir().unwrap();
    let hooks_dir = extra.path().join("hooks");
    let notify_dir = extra.path().join("notify");
    std::fs::create_dir_all(&hooks_dir).unwrap();
    std::fs::create_dir_all(&notify_dir).unwrap();
    let env_file = hooks_dir.join("kite.env");
    let script = format!(
        "cat >> '{0}/events.ndjson'; echo >> '{0}/events.ndjson'; env >> '{0}/env.txt'",
        notify_dir.display()
    );
    let config = format!(
        "[kite]\ntimeout = \"2s\"\n[notify]\ndesktop = false\ncommand = [\"sh\", \"-c\", {}]\n\
         [hooks]\nenv_file = {}\n",
        toml_string(&script),
        toml_string(&env_file.display().to_string())
    );
    let mut daemon = Daemon::builder(&sim).config_toml(&config).start();

    // What kited says, gathered as it is said (the token's own answers excepted).
    let mut said: Vec<(String, Vec<u8>)> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();

    let watcher = {
        let stream = connect(daemon.socket_path(), Duration::from_secs(20));
        (&stream).write_all(b"{\"op\":\"watch\"}\n").unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let first = read_line(&mut reader).unwrap();
        said.push(("watch ack".into(), first.into_bytes()));
        (
            stream,
            thread::spawn(move || {
                let mut all = Vec::new();
                let _ = reader.read_to_end(&mut all);
                all
            }),
        )
    };

    // Browser login.
    let answer = daemon.request(&json!({"op": "login_url"}));
    said.push(("login_url".into(), answer.to_string().into_bytes()));
    let before = sim.valid_access_tokens();
    let (status, page) = follow_browser_login(&daemon, answer["login_url"].as_str().unwrap());
    assert_eq!(status, 200, "{page}");
    said.push(("callback page".into(), page.into_bytes()));
    tokens.push(the_new_token(&sim, &before));
    assert_eq!(served_token(&daemon).as_ref(), tokens.last());

    // Socket and kitectl.
    for op in ["status", "ping"] {
        let answer = daemon.request(&json!({ "op": op }));
        said.push((op.into(), answer.to_string().into_bytes()));
    }
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["ping"],
        &["login"],
        &["exchange", "NotARealToken0000"],
    ] {
        let out = daemon.ctl(args);
        said.push((format!("kitectl {args:?} stdout"), out.stdout));
        said.push((format!("kitectl {args:?} stderr"), out.stderr));
    }
    // Failing exchanges: Kite down, and a used request token.
    sim.fail_next(1, 503);
    let answer = exchange(&daemon, &sim.issue_request_token());
    assert_eq!(answer["ok"], json!(false));
    said.push(("exchange 503".into(), answer.to_string().into_bytes()));
    let used = sim.issue_request_token();
    let before = sim.valid_access_tokens();
    assert_eq!(exchange(&daemon, &used)["ok"], json!(true));
    tokens.push(the_new_token(&sim, &before));
    let answer = exchange(&daemon, &used);
    assert_eq!(answer["ok"], json!(false));
    said.push(("exchange reused".into(), answer.to_string().into_bytes()));

    // HTTP: every GET route, failing POSTs, and one successful generate (its answer excepted).
    for path in GET_ROUTES {
        let reply = daemon.http("GET", path, &[], b"");
        said.push((format!("GET {path}"), head_and_body(&reply)));
    }
    for body in [
        json!({"request_token": used}),
        json!({"request_token": ""}),
        json!({"nope": 1}),
    ] {
        let reply = daemon.http(
            "POST",
            "/api/token/generate-access-token",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert!(reply.status >= 400, "{}", reply.text());
        said.push((format!("POST generate {body}"), head_and_body(&reply)));
    }
    let before = sim.valid_access_tokens();
    let (status, _, body) = daemon.http_post_json(
        "/api/token/generate-access-token",
        &json!({"request_token": sim.issue_request_token()}),
    );
    assert_eq!(status, 200, "{body}");
    tokens.push(the_new_token(&sim, &before));

    // Logout, then stop kited so everything it writes is written.
    let answer = daemon.request(&json!({"op": "logout"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    said.push(("logout".into(), answer.to_string().into_bytes()));
    let answer = daemon.request(&json!({"op": "status"}));
    said.push((
        "status after logout".into(),
        answer.to_string().into_bytes(),
    ));
    eventually(Duration::from_secs(5), "the notify command to run", || {
        std::fs::read_to_string(notify_dir.join("events.ndjson"))
            .is_ok_and(|t| t.contains("token_invalidated"))
    });
    daemon.terminate();
    let (stream, events) = watcher;
    drop(stream);
    said.push(("watch events".into(), events.join().unwrap()));
    said.push(("kited stdout+stderr".into(), daemon.log().into_bytes()));

    // Every file kited (or its hooks) left, except the env file, whose job is the token.
    let state_dir = daemon.state_dir().to_path_buf();
    let mut files = Vec::new();
    files_under(daemon.dir(), &mut files);
    files_under(extra.path(), &mut files);
    assert!(files.iter().any(|f| f.starts_with(&state_dir)), "{files:?}");
    let sled_dir = state_dir.join("db");
    let mut checked = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        assert!(
            !contains(&bytes, &secret),
            "the api secret is in {}",
            file.display()
        );
        if *file == env_file || file.starts_with(&sled_dir) {
            continue;
        }
        for token in &tokens {
            assert!(
                !contains(&bytes, token),
                "an access token is in {}",
                file.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 3, "{files:?}");
    for (what, bytes) in &said {
        assert!(!contains(bytes, &secret), "the api secret is in {what}");
        for token in &tokens {
            assert!(
                !contains(bytes, token),
                "an access token is in {what}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// A reply's headers and body, as one blob to search.
fn head_and_body(reply: &http_client::HttpReply) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in &reply.headers {
        out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
    }
    out.extend_from_slice(&reply.body);
    out
}

// Concurrency
