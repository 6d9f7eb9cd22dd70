//! The public listener: `http.public_listen` serves only the public routes whatever `Host`
//! says, over TCP or a Unix socket; on `http.listen` a request that came through a proxy (its
//! `X-Forwarded-For` and kin) or from another machine never reaches a loopback-only route; and
//! the configuration checks around both. The guide's proxy recipes in front of it are tested in
//! `public_proxies`, with the fixture below.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use kite_tests::caddy::{self, PUBLIC_HOST};
use kite_tests::harness::free_port;
use kite_tests::http_client;
use kite_tests::{Daemon, Sim};
use serde_json::{json, Value};

use crate::helper::sim;

/// The routes only the machine's own callers may reach: (method, path).
pub(crate) const LOOPBACK_ONLY: [(&str, &str); 5] = [
    ("GET", "/"),
    ("GET", "/api/token/status"),
    ("GET", "/api/token/refresh-info"),
    ("GET", "/api/token/callback-url"),
    ("POST", "/api/token/generate-access-token"),
];

/// The headers a proxy adds, each of which must take loopback routes away.
const PROXY_EVIDENCE: [(&str, &str); 6] = [
    ("Forwarded", "for=203.0.113.9;proto=https"),
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Forwarded-Host", "kited.test"),
    ("X-Forwarded-Proto", "https"),
    ("Via", "1.1 proxy"),
    ("X-Real-IP", "203.0.113.9"),
];

/// A sim and a kited with `public_url = https://kited.test:PORT` (PORT: the proxy's, reserved)
/// and `public_listen` on a free loopback port; the sim redirects to the public callback.
pub(crate) struct Public {
    pub(crate) sim: Sim,
    pub(crate) daemon: Daemon,
    pub(crate) proxy_port: u16,
    pub(crate) public_listen: String,
}

pub(crate) fn public_daemon() -> Public {
    let sim = sim();
    let proxy_port = caddy::reserve_port();
    let public = caddy::public_url(proxy_port);
    let public_listen = format!("127.0.0.1:{}", free_port());
    sim.set_redirect_url(&format!("{public}/auth/callback"));
    let daemon = Daemon::builder(&sim)
        .keep_redirect()
        .config_toml(&format!(
            "[http]\npublic_url = \"{public}\"\npublic_listen = \"{public_listen}\"\n\n\
             [notify]\ndesktop = false\n"
        ))
        .start();
    Public {
        sim,
        daemon,
        proxy_port,
        public_listen,
    }
}

/// A fresh login link (`https://kited.test:PORT/login?t=...`).
pub(crate) fn login_link(d: &Daemon) -> String {
    let answer = d.request(&json!({"op": "login_link"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    answer["link"].as_str().unwrap().to_string()
}

/// The port of `host:port`.
pub(crate) fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// straight to kited's listeners

#[test]
fn proxy_headers_on_the_loopback_listener_get_no_loopback_route() {
    let p = public_daemon();
    let loopback = p.daemon.http_addr().to_string();
    let public_host = format!("{PUBLIC_HOST}:{}", p.proxy_port);
    // Without a proxy header the machine's own caller gets the status, so the refusals below
    // are the headers' doing.
    let plain = p.daemon.http("GET", "/api/token/status", &[], b"");
    assert_eq!(plain.status, 200);
    for (name, value) in PROXY_EVIDENCE {
        for (method, path) in LOOPBACK_ONLY {
            let headers = [(name, value), ("Content-Type", "application/json")];
            let reply = p.daemon.http(method, path, &headers, b"{}");
            assert!(
                reply.status == 421 || reply.status == 404,
                "{name}: {method} {path} answered {} {}",
                reply.status,
                reply.text()
            );
            let headers = [
                (name, value),
                ("Host", &public_host),
                ("Content-Type", "application/json"),
            ];
            let reply = p.daemon.http(method, path, &headers, b"{}");
            assert_eq!(
                reply.status, 404,
                "{name}: {method} {path} with the public Host"
            );
        }
        // /login needs a ticket as on the public side; the callback stays reachable.
        let login = p.daemon.http(
            "GET",
            "/login",
            &[(name, value), ("Host", &public_host)],
            b"",
        );
        assert_eq!(login.status, 403, "{name}");
        let health = p.daemon.http(
            "GET",
            "/healthz",
            &[(name, value), ("Host", &public_host)],
            b"",
        );
        assert_eq!(health.status, 200, "{name}");
    }
    assert!(!loopback.is_empty());
}

#[test]
fn the_public_listener_ignores_host() {
    let p = public_daemon();
    let loopback = p.daemon.http_addr().to_string();
    for host in [
        loopback.clone(),
        format!("localhost:{}", port_of(&loopback)),
        p.public_listen.clone(),
        "evil.example".into(),
    ] {
        for (method, path) in LOOPBACK_ONLY {
            let url = format!("http://{}{path}", p.public_listen);
            let reply = http_client::request(
                method,
                &url,
                &[("Host", &host), ("Content-Type", "application/json")],
                b"{}",
            )
            .unwrap();
            assert_eq!(
                reply.status,
                404,
                "{method} {path} with Host {host}: {}",
                reply.text()
            );
        }
        let url = format!("http://{}/login", p.public_listen);
        let login = http_client::request("GET", &url, &[("Host", &host)], b"").unwrap();
        assert_eq!(login.status, 403, "/login without a ticket, Host {host}");
        let url = format!("http://{}/healthz", p.public_listen);
        let health = http_client::request("GET", &url, &[("Host", &host)], b"").unwrap();
        assert_eq!((health.status, health.json()), (200, json!({"ok": true})));
    }
    // A ticket opens /login there, whatever the Host.
    let link = login_link(&p.daemon);
    let path = &link[link.find("/login").unwrap()..];
    let url = format!("http://{}{path}", p.public_listen);
    let reply = http_client::request("GET", &url, &[("Host", &loopback)], b"").unwrap();
    assert_eq!(reply.status, 303, "{}", reply.text());
}

/// `GET path` over the Unix socket at `socket`, with `Host: host`; the status and body.
fn unix_get(socket: &std::path::Path, path: &str, host: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let status = kite_tests::harness::reply_status(&reply);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_unix_socket_public_listener_serves_only_the_public_routes() {
    let sim = sim();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("public.sock");
    let mut d = Daemon::builder(&sim)
        .env("KITED_PUBLIC_URL", "https://kite.example.com")
        .env("KITED_PUBLIC_LISTEN", socket.to_str().unwrap())
        .start();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "the proxy's user must be able to connect");
    let loopback = d.http_addr().to_string();
    for (_, path) in LOOPBACK_ONLY.iter().filter(|(m, _)| *m == "GET") {
        let (status, body) = unix_get(&socket, path, &loopback);
        assert_eq!(status, 404, "{path}: {body}");
    }
    assert_eq!(unix_get(&socket, "/login", &loopback).0, 403);
    let (status, body) = unix_get(&socket, "/healthz", &loopback);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ok": true})
    );
    d.terminate();
    assert!(!socket.exists(), "the socket file outlived kited");
}

// ---------------------------------------------------------------------------------------------
// configuration

#[test]
fn public_listen_needs_public_url_and_listen_off_loopback_needs_consent() {
    let sim = sim();
    // A daemon only for its environment (temp XDG dirs, the sim); the commands below run kited
    // without the harness's flags.
    let d = Daemon::start(&sim);
    for (args, envs, keys) in [
        (
            vec!["run"],
            vec![("KITED_PUBLIC_LISTEN", "127.0.0.1:1")],
            ["http.public_listen", "http.public_url"],
        ),
        (
            vec!["check-config"],
            vec![("KITED_PUBLIC_LISTEN", "127.0.0.1:1")],
            ["http.public_listen", "http.public_url"],
        ),
        (
            vec!["--listen", "0.0.0.0:0", "run"],
            vec![],
            ["http.listen", "http.listen_public_ok"],
        ),
        (
            vec!["check-config"],
            vec![("KITED_LISTEN", "0.0.0.0:0")],
            ["http.listen", "http.listen_public_ok"],
        ),
    ] {
        let mut command = d.kited_command(&args);
        command.env("KITED_SOCKET", d.dir().join("other.sock"));
        command.env("KITED_STATE_DIR", d.dir().join("other-state"));
        for (key, value) in &envs {
            command.env(key, value);
        }
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let status = crate::helper::wait_child(
            &mut child,
            Duration::from_secs(10),
            "kited with a bad http config",
        );
        let (_, stderr) = crate::helper::read_outputs(&mut child);
        assert_eq!(status.code(), Some(78), "{args:?} {envs:?}: {stderr}");
        for key in keys {
            assert!(stderr.contains(key), "{key} not named: {stderr}");
        }
    }
}

#[test]
fn check_config_shows_the_public_listener() {
    let p = public_daemon();
    let check = p
        .daemon
        .kited_command(&[
            "--config",
            p.daemon.config_path().unwrap().to_str().unwrap(),
        ])
        .arg("check-config")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    let row = out
        .lines()
        .find(|l| l.starts_with("http.public_listen"))
        .unwrap_or_else(|| panic!("no http.public_listen row:\n{out}"));
    assert!(row.contains(&p.public_listen), "{row}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("http.listen_public_ok") && l.ends_with("false")),
        "{out}"
    );
}
