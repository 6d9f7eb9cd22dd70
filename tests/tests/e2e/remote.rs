//! Log in from anywhere: a real kited behind a real Caddy (TLS with Caddy's internal CA, the
//! public name `kited.test` mapped to 127.0.0.1 inside the clients), the Kite simulator
//! redirecting to the PUBLIC callback, login links (tickets), and push to the Telegram and ntfy
//! simulators. Every wait is a poll with a deadline.

use std::time::Duration;

use kite_tests::caddy::{self, Caddy, PUBLIC_HOST};
use kite_tests::harness::eventually;
use kite_tests::http_client::{self, HttpReply};
use kite_tests::{Daemon, Sim};
use serde_json::{json, Value};

use crate::helper::sim;

// ---------------------------------------------------------------------------------------------
// helpers

/// A Kite simulator, a kited with `http.public_url = https://kited.test:PORT`, and Caddy on
/// that port in front of it. The sim's registered redirect URL is the public callback.
struct Remote {
    sim: Sim,
    daemon: Daemon,
    caddy: Caddy,
}

/// The config every daemon here gets: no desktop, a one-minute warn window, the public URL, and
/// `http_extra` inside `[http]` followed by `tail` (other tables).
fn config(public_url: &str, http_extra: &str, tail: &str) -> String {
    format!(
        "[http]\npublic_url = \"{public_url}\"\n{http_extra}\n\n[expiry]\nwarn_before = [\"1m\"]\n\n\
         [notify]\ndesktop = false\n\n{tail}\n"
    )
}

fn remote_with(http_extra: &str, tail: &str, envs: &[(&str, &str)]) -> Remote {
    let sim = sim();
    let port = caddy::reserve_port();
    let public = caddy::public_url(port);
    sim.set_redirect_url(&format!("{public}/auth/callback"));
    let mut builder = Daemon::builder(&sim)
        .keep_redirect()
        .config_toml(&config(&public, http_extra, tail));
    for (key, value) in envs {
        builder = builder.env(key, value);
    }
    let daemon = builder.start();
    let caddy = Caddy::start(port, daemon.http_addr());
    Remote { sim, daemon, caddy }
}

fn remote() -> Remote {
    remote_with("", "", &[])
}

/// `Host: kited.test:PORT` straight to kited's loopback port (what Caddy forwards).
fn public_host(r: &Remote) -> String {
    format!("{PUBLIC_HOST}:{}", r.caddy.port())
}

fn login_link(d: &Daemon) -> (String, String) {
    let answer = d.request(&json!({"op": "login_link"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    (
        answer["link"].as_str().unwrap().to_string(),
        answer["expires_at"].as_str().unwrap().to_string(),
    )
}

/// The `t` of a login link.
fn ticket_of(link: &str) -> String {
    let url = url::Url::parse(link).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no ticket in {link}"))
}

fn token_of(d: &Daemon) -> Option<String> {
    let answer = d.request(&json!({"op": "get_token"}));
    answer["access_token"].as_str().map(str::to_string)
}

/// What a phone's browser does with a login link, without the browser: the link through Caddy
/// (303 to Kite), Kite's login (302 to the public callback), the callback through Caddy.
fn phone_login(r: &Remote, link: &str) -> HttpReply {
    let to_kite = r.caddy.get_url(link);
    assert_eq!(to_kite.status, 303, "{link}: {}", to_kite.text());
    let kite_url = to_kite.header("location").expect("a Location").to_string();
    assert!(kite_url.starts_with(&r.sim.login_url()), "{kite_url}");
    let at_kite = http_client::get(&kite_url).unwrap();
    assert_eq!(at_kite.status, 302, "{}", at_kite.text());
    let callback = at_kite.header("location").unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{}/auth/callback?", r.caddy.public_url())),
        "Kite sent the browser to {callback}"
    );
    r.caddy.get_url(&callback)
}

// ---------------------------------------------------------------------------------------------
// configuration

#[test]
fn a_public_url_with_a_path_is_a_config_error() {
    let sim = sim();
    for bad in [
        "https://kite.example.com/kited",
        "https://kite.example.com/?a=b",
        "ftp://kite.example.com",
        "not a url",
    ] {
        let mut d = Daemon::builder(&sim).env("KITED_PUBLIC_URL", bad).spawn();
        let status = d
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("kited kept running with public_url {bad:?}"));
        assert_eq!(status.code(), Some(78), "{bad}: {}", d.log());
        assert!(d.log().contains("http.public_url"), "{}", d.log());
        let check = d.kited_command(&["check-config"]).output().unwrap();
        assert_eq!(check.status.code(), Some(78), "{bad}");
    }
}

#[test]
fn the_callback_url_everywhere_is_the_public_one() {
    let r = remote();
    let public_callback = format!("{}/auth/callback", r.caddy.public_url());
    let reply = r.daemon.http("GET", "/api/token/callback-url", &[], b"");
    assert_eq!(reply.json()["callback_url"], json!(public_callback));
    let info = r
        .daemon
        .http("GET", "/api/token/refresh-info", &[], b"")
        .json();
    assert_eq!(info["callback_url"], json!(public_callback));
    let answer = r.daemon.request(&json!({"op": "login_url"}));
    assert_eq!(answer["callback_url"], json!(public_callback));
    let check = r
        .daemon
        .kited_command(&[
            "--config",
            r.daemon.config_path().unwrap().to_str().unwrap(),
        ])
        .arg("check-config")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains(&format!("Register this redirect URL for your app on https://developers.kite.trade: {public_callback}")),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// which routes each host reaches

/// (method, path, body, status on the public host, status on loopback).
const ROUTES: &[(&str, &str, &str, u16, u16)] = &[
    ("GET", "/healthz", "", 200, 200),
    ("GET", "/auth/callback", "", 400, 400),
    ("GET", "/login", "", 403, 303),
    ("GET", "/favicon.ico", "", 200, 200),
    ("GET", "/static/icon.svg", "", 200, 200),
    ("GET", "/static/app.css", "", 200, 200),
    ("GET", "/", "", 404, 200),
    ("GET", "/static/app.js", "", 404, 200),
    ("GET", "/static/kite-token-flow.js", "", 404, 200),
    ("GET", "/api/token/status", "", 404, 200),
    ("GET", "/api/token/callback-url", "", 404, 200),
    ("GET", "/api/token/refresh-info", "", 404, 200),
    ("POST", "/api/token/generate-access-token", "{}", 404, 400),
    ("POST", "/auth/callback", "{}", 404, 405),
    ("POST", "/kite/postback", "{}", 404, 404),
    ("OPTIONS", "/api/token/status", "", 404, 403),
    ("GET", "/nowhere", "", 404, 404),
];

#[test]
fn route_matrix_on_the_public_and_loopback_hosts() {
    let r = remote();
    let public_host = public_host(&r);
    for &(method, path, body, public, loopback) in ROUTES {
        let json_type = [("Content-Type", "application/json")];
        let headers: &[(&str, &str)] = if method == "POST" { &json_type } else { &[] };
        let via_caddy = r.caddy.request(method, path, headers);
        assert_eq!(
            via_caddy.status,
            public,
            "{method} {path} through Caddy: {}",
            via_caddy.text()
        );
        assert_eq!(via_caddy.header("server"), Some("Caddy"), "{method} {path}");
        let mut with_host = headers.to_vec();
        with_host.push(("Host", &public_host));
        let direct = r.daemon.http(method, path, &with_host, body.as_bytes());
        assert_eq!(
            direct.status, public,
            "{method} {path} with Host {public_host}"
        );
        let local = r.daemon.http(method, path, headers, body.as_bytes());
        assert_eq!(
            local.status,
            loopback,
            "{method} {path} on loopback: {}",
            local.text()
        );
    }
    // The public host is matched case-insensitively; the wrong port or another name is refused.
    let upper = public_host.to_uppercase();
    assert_eq!(
        r.daemon
            .http("GET", "/healthz", &[("Host", &upper)], b"")
            .status,
        200
    );
    assert_eq!(
        r.daemon.http("GET", "/", &[("Host", &upper)], b"").status,
        404
    );
    for foreign in [
        "kited.test",
        "kited.test:1",
        "evil.test",
        "kited.test.evil.test",
    ] {
        let reply = r.daemon.http("GET", "/healthz", &[("Host", foreign)], b"");
        assert_eq!(reply.status, 421, "Host {foreign}");
    }
}

#[test]
fn forwarded_headers_unlock_nothing() {
    let r = remote();
    let loopback = r.daemon.http_addr().to_string();
    let forged = [
        ("X-Forwarded-Host", loopback.as_str()),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Proto", "http"),
        ("X-Real-IP", "127.0.0.1"),
        ("Forwarded", "for=127.0.0.1;host=127.0.0.1"),
    ];
    for path in ["/api/token/status", "/", "/api/token/refresh-info"] {
        let reply = r.caddy.request("GET", path, &forged);
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
    }
    let reply = r.caddy.request("GET", "/login", &forged);
    assert_eq!(reply.status, 403, "a ticket-less /login through the proxy");
}

#[test]
fn postbacks_reach_the_public_host_only_when_enabled() {
    let r = remote_with("postbacks = true", "", &[]);
    let json_type = [("Content-Type", "application/json")];
    let body =
        json!({"order_id": "1", "order_timestamp": "2026-11-23 10:00:00", "checksum": "bad"});
    let reply = r.caddy.post("/kite/postback", &json_type, body.to_string());
    // Reached and checked: a wrong checksum is refused by kited itself, not hidden as 404.
    assert_eq!(reply.status, 403, "{}", reply.text());
    assert!(reply.text().contains("checksum"), "{}", reply.text());
}

// ---------------------------------------------------------------------------------------------
// login links

#[test]
fn login_links_lead_to_a_fresh_kite_login_and_forgeries_get_403() {
    let r = remote();
    let (link, expires_at) = login_link(&r.daemon);
    assert!(
        link.starts_with(&format!("{}/login?t=", r.caddy.public_url())),
        "{link}"
    );
    let expires = chrono::DateTime::parse_from_rfc3339(&expires_at).unwrap();
    assert_eq!(expires.format("%H:%M:%S %z").to_string(), "06:00:00 +0530");
    let left = expires.signed_duration_since(chrono::Utc::now());
    assert!(
        left > chrono::Duration::zero() && left <= chrono::Duration::hours(24),
        "{expires_at}"
    );
    let ticket = ticket_of(&link);
    assert!(
        ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{ticket}"
    );

    // Twice: each visit gets its own fresh state.
    let mut states = Vec::new();
    for _ in 0..2 {
        let reply = r.caddy.get_url(&link);
        assert_eq!(reply.status, 303, "{}", reply.text());
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let location = url::Url::parse(reply.header("location").unwrap()).unwrap();
        let params: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
        assert_eq!(params["api_key"], r.sim.api_key());
        states.push(params["redirect_params"].clone());
    }
    assert_ne!(states[0], states[1]);

    // Forged, tampered, stretched, missing: 403 with a page that says how to get a new one.
    let (expiry, tag) = ticket.split_once('-').unwrap();
    let flipped: String = tag
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 0 {
                if c == '0' {
                    '1'
                } else {
                    '0'
                }
            } else {
                c
            }
        })
        .collect();
    let stretched = expiry.parse::<i64>().unwrap() + 86_400;
    let forged = [
        format!("/login?t={expiry}-{flipped}"),
        format!("/login?t={stretched}-{tag}"),
        format!("/login?t={expiry}-{}", "0".repeat(64)),
        "/login?t=".to_string(),
        "/login?t=garbage".to_string(),
        "/login".to_string(),
        format!("/login?ticket={ticket}"),
    ];
    for path in &forged {
        let reply = r.caddy.get(path);
        assert_eq!(reply.status, 403, "{path}");
        let page = reply.text();
        assert!(page.contains("kitectl login --link"), "{path}: {page}");
        assert!(!page.contains("Back to kited"), "{page}");
        assert!(reply.header("location").is_none());
    }
    assert_eq!(
        r.sim.calls_to("GET", "/connect/login").len(),
        0,
        "no browser got to Kite"
    );

    // On loopback the person is at the machine: no ticket needed.
    let local = r.daemon.http("GET", "/login", &[], b"");
    assert_eq!(local.status, 303);
    assert!(local
        .header("location")
        .unwrap()
        .starts_with(&r.sim.login_url()));
}

#[test]
fn a_phone_login_through_the_proxy_stores_the_token() {
    let r = remote();
    assert_eq!(token_of(&r.daemon), None);
    let (link, _) = login_link(&r.daemon);
    let page = phone_login(&r, &link);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains("Logged in as Kite Tester"),
        "{}",
        page.text()
    );
    assert!(
        !page.text().contains("Back to kited"),
        "the public callback page must not link to the loopback-only token page"
    );
    let token = token_of(&r.daemon).expect("a token after the phone login");
    assert!(!page.text().contains(&token));
    // The link is not single-use; it stays good until the cutoff.
    assert_eq!(r.caddy.get_url(&link).status, 303);
}

#[test]
fn a_forged_state_through_the_proxy_is_refused_before_kite() {
    let r = remote();
    let request_token = r.sim.issue_request_token();
    for state in ["0123456789abcdef0123456789abcdef", ""] {
        let reply = r.caddy.get(&format!(
            "/auth/callback?action=login&type=login&status=success&request_token={request_token}&state={state}"
        ));
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(reply.text().contains("stale"), "{}", reply.text());
        assert!(
            reply.text().contains("kitectl login --link"),
            "{}",
            reply.text()
        );
    }
    assert_eq!(r.sim.calls_to("POST", "/session/token").len(), 0);
    assert_eq!(token_of(&r.daemon), None);
}

#[test]
fn tickets_expire_at_the_cutoff_and_survive_a_restart() {
    let sim = sim();
    let public = caddy::public_url(caddy::reserve_port());
    let host = public.trim_start_matches("https://").to_string();
    let start = |state: Option<&std::path::Path>, now: &str| {
        let mut builder = Daemon::builder(&sim)
            .config_toml(&config(&public, "", ""))
            .env("KITED_FAKE_NOW", now);
        if let Some(dir) = state {
            builder = builder.state_dir(dir);
        }
        builder.start()
    };
    let get_link = |d: &Daemon, link: &str| {
        let path = link.trim_start_matches(&public);
        d.http("GET", path, &[("Host", &host)], b"").status
    };

    // Three seconds before the cutoff: the link works, then stops at 06:00 IST.
    let mut first = start(None, "2026-11-24T05:59:57+05:30");
    let (link, expires_at) = login_link(&first);
    assert_eq!(expires_at, "2026-11-24T06:00:00+05:30");
    assert_eq!(get_link(&first, &link), 303);
    eventually(
        Duration::from_secs(15),
        "the ticket to expire at 06:00",
        || get_link(&first, &link) == 403,
    );
    first.terminate();

    // The key lives in the store: a restarted kited (clock back before that cutoff) still
    // honours the link it sent; a fresh store (a new key) does not.
    let second = start(Some(first.state_dir()), "2026-11-24T05:00:00+05:30");
    assert_eq!(get_link(&second, &link), 303);
    drop(second);
    let other = start(None, "2026-11-24T05:00:00+05:30");
    assert_eq!(get_link(&other, &link), 403);
}

#[test]
fn kitectl_login_link_prints_the_link_or_names_public_url() {
    let r = remote();
    let out = r.daemon.ctl(&["login", "--link"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let link = stdout.lines().next().unwrap();
    assert!(
        link.starts_with(&format!("{}/login?t=", r.caddy.public_url())),
        "{stdout}"
    );
    assert_eq!(r.caddy.get_url(link).status, 303);

    let out = r.daemon.ctl(&["login", "--link", "--qr"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().count() > 10, "{stdout}");
    assert!(stdout.contains('█') || stdout.contains('▀'), "{stdout}");

    let sim = sim();
    let plain = Daemon::start(&sim);
    let out = plain.ctl(&["login", "--link"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("http.public_url"), "{stderr}");
    let answer = plain.request(&json!({"op": "login_link"}));
    assert_eq!(answer["error"]["kind"], json!("bad_request"), "{answer}");
    let _: Value = answer;
}
