//! The public side behind a proxy: `http.public_listen` serves only the public routes whatever
//! `Host` says; on `http.listen` a request that came through a proxy (its `X-Forwarded-For` and
//! kin) or from another machine never reaches a loopback-only route. The operations guide's
//! Caddy and nginx recipes are read from `docs/operations.md` and run as written (only the name,
//! ports and certificate paths swapped) in front of a real kited, and so are the dangerous
//! variants the guide warns against.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use kite_tests::caddy::{self, Caddy, PUBLIC_HOST};
use kite_tests::harness::free_port;
use kite_tests::http_client::{self, HttpReply};
use kite_tests::nginx::{Nginx, NginxDir};
use kite_tests::recipe::{recipe, substitute};
use kite_tests::{Daemon, Sim};
use serde_json::{json, Value};

use crate::helper::sim;

/// The routes only the machine's own callers may reach: (method, path).
const LOOPBACK_ONLY: [(&str, &str); 5] = [
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
struct Public {
    sim: Sim,
    daemon: Daemon,
    proxy_port: u16,
    public_listen: String,
}

fn public_daemon() -> Public {
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
fn login_link(d: &Daemon) -> String {
    let answer = d.request(&json!({"op": "login_link"}));
    assert_eq!(answer["ok"], json!(true), "{answer}");
    answer["link"].as_str().unwrap().to_string()
}

/// What a browser does with a login link: the link through the proxy (303 to Kite), Kite's
/// login (302 to the public callback), the callback through the proxy; then the token is there.
fn login_through(p: &Public, get: &dyn Fn(&str) -> HttpReply) {
    let link = login_link(&p.daemon);
    let path = link
        .strip_prefix(&caddy::public_url(p.proxy_port))
        .expect("the link is on the public URL")
        .to_string();
    let to_kite = get(&path);
    assert_eq!(to_kite.status, 303, "{link}: {}", to_kite.text());
    let kite_url = to_kite.header("location").expect("a Location").to_string();
    assert!(kite_url.starts_with(&p.sim.login_url()), "{kite_url}");
    let at_kite = http_client::get(&kite_url).unwrap();
    assert_eq!(at_kite.status, 302, "{}", at_kite.text());
    let callback = at_kite.header("location").unwrap().to_string();
    let callback_path = callback
        .strip_prefix(&caddy::public_url(p.proxy_port))
        .unwrap_or_else(|| panic!("Kite sent the browser to {callback}"))
        .to_string();
    let page = get(&callback_path);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("Logged in"), "{}", page.text());
    let token = p.daemon.request(&json!({"op": "get_token"}));
    assert_eq!(token["ok"], json!(true), "{token}");
}

/// Whether a reply gives away anything only loopback may see: a loopback-only route answered.
fn denied(reply: &Result<HttpReply, String>) -> bool {
    match reply {
        // The proxy closed the connection (nginx's 444) or refused the handshake.
        Err(_) => true,
        Ok(r) => {
            let text = r.text();
            (r.status == 404 || r.status == 421 || (r.status == 200 && text.is_empty()))
                && !text.contains("user_id")
                && !text.contains("login_url")
                && !text.contains("callback_url")
        }
    }
}

/// Sends one request (method, path, headers) through a proxy; `Err` when the proxy refused it.
type Send<'a> = &'a dyn Fn(&str, &str, &[(&str, &str)]) -> Result<HttpReply, String>;

/// Every loopback-only route through `send`, with the proxy's own Host and with each name a
/// stranger could write instead, is denied.
fn assert_loopback_routes_denied(what: &str, loopback: &str, send: Send) {
    for host in [
        None,
        Some(loopback.to_string()),
        Some(format!("localhost:{}", port_of(loopback))),
    ] {
        for (method, path) in LOOPBACK_ONLY {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(host) = &host {
                headers.push(("Host", host));
            }
            let reply = send(method, path, &headers);
            assert!(
                denied(&reply),
                "{what}: {method} {path} with Host {host:?} was served: {:?}",
                reply.as_ref().map(|r| (r.status, r.text()))
            );
        }
    }
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

/// The Caddy recipe of the guide, for kited.test:PORT in front of `upstream`.
fn caddy_recipe(port: u16, upstream: &str) -> String {
    substitute(
        &recipe("caddy"),
        &[
            ("kite.example.com", &format!("{PUBLIC_HOST}:{port}")),
            ("127.0.0.1:8080", upstream),
        ],
    )
}

/// An nginx recipe of the guide (`nginx` on 443, `nginx-8443`), on kited.test:PORT in front of
/// `upstream`, with the test's certificate.
fn nginx_recipe(
    name: &str,
    listen_port: &str,
    dir: &NginxDir,
    port: u16,
    upstream: &str,
) -> String {
    let text = recipe(name);
    assert!(
        !text.contains("$http_host"),
        "the {name} recipe passes the client's Host through:\n{text}"
    );
    substitute(
        &text,
        &[
            (
                "/etc/letsencrypt/live/kite.example.com/fullchain.pem",
                &dir.cert().display().to_string(),
            ),
            (
                "/etc/letsencrypt/live/kite.example.com/privkey.pem",
                &dir.key().display().to_string(),
            ),
            ("kite.example.com", PUBLIC_HOST),
            (
                &format!("listen {listen_port} "),
                &format!("listen 127.0.0.1:{port} "),
            ),
            ("http://127.0.0.1:8080", &format!("http://{upstream}")),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// the recipes, as written

#[test]
fn the_caddy_recipe_serves_the_login_and_nothing_else() {
    let p = public_daemon();
    let caddy = Caddy::start_site(p.proxy_port, &caddy_recipe(p.proxy_port, &p.public_listen));
    login_through(&p, &|path| caddy.get(path));
    let loopback = p.daemon.http_addr().to_string();
    assert_loopback_routes_denied("caddy recipe", &loopback, &|method, path, headers| {
        Ok(caddy.request(method, path, headers))
    });
    // The health check through it says nothing about the machine.
    let health = caddy.get("/healthz");
    assert_eq!((health.status, health.json()), (200, json!({"ok": true})));
}

#[test]
fn the_caddy_recipe_rewriting_host_to_the_loopback_listener_is_still_denied() {
    // The two mistakes the guide warns against at once: the loopback listener as upstream, and
    // Host rewritten to it. Caddy adds X-Forwarded-For, so kited still refuses.
    let p = public_daemon();
    let loopback = p.daemon.http_addr().to_string();
    let dangerous = substitute(
        &caddy_recipe(p.proxy_port, &p.public_listen),
        &[(
            &format!("reverse_proxy {}", p.public_listen),
            &format!("reverse_proxy {loopback} {{\n\t\theader_up Host {{upstream_hostport}}\n\t}}"),
        )],
    );
    let caddy = Caddy::start_site(p.proxy_port, &dangerous);
    assert_loopback_routes_denied(
        "caddy with header_up Host",
        &loopback,
        &|method, path, headers| Ok(caddy.request(method, path, headers)),
    );
    let status = caddy.get("/api/token/status");
    assert_eq!(status.status, 421, "{}", status.text());
}

#[test]
fn the_nginx_recipes_serve_the_login_and_nothing_else() {
    let p = public_daemon();
    let loopback = p.daemon.http_addr().to_string();
    for (name, listen_port) in [("nginx", "443"), ("nginx-8443", "8443")] {
        let dir = NginxDir::new();
        let servers = nginx_recipe(name, listen_port, &dir, p.proxy_port, &p.public_listen);
        let nginx = Nginx::start(dir, p.proxy_port, &servers);
        login_through(&p, &|path| nginx.request("GET", path, &[]));
        assert_loopback_routes_denied(name, &loopback, &|method, path, headers| {
            nginx
                .try_request(method, path, headers)
                .map_err(|e| e.to_string())
        });
        // A Host other than the public name never reaches kited: nginx closes the connection.
        let stranger = nginx.try_request("GET", "/healthz", &[("Host", &loopback)]);
        assert!(
            stranger.is_err(),
            "{name}: {:?}",
            stranger.map(|r| r.status)
        );
    }
}

#[test]
fn nginx_passing_the_clients_host_to_the_loopback_listener_is_still_denied() {
    // `$http_host` and the loopback listener as upstream, with and without the default server:
    // the recipe's X-Forwarded-For still makes kited refuse.
    let p = public_daemon();
    let loopback = p.daemon.http_addr().to_string();
    for keep_default_server in [true, false] {
        let dir = NginxDir::new();
        let mut servers = substitute(
            &nginx_recipe("nginx", "443", &dir, p.proxy_port, &p.public_listen),
            &[
                (
                    "proxy_set_header Host $host;",
                    "proxy_set_header Host $http_host;",
                ),
                (
                    &format!("http://{}", p.public_listen),
                    &format!("http://{loopback}"),
                ),
            ],
        );
        if !keep_default_server {
            let second = servers.find("server {\n    listen 127.0.0.1").map(|first| {
                servers[first + 1..]
                    .find("server {")
                    .map(|i| i + first + 1)
                    .expect("two server blocks")
            });
            servers = servers[second.expect("a default server block")..].to_string();
            assert!(!servers.contains("default_server"), "{servers}");
        }
        let nginx = Nginx::start(dir, p.proxy_port, &servers);
        assert_loopback_routes_denied(
            &format!("nginx with $http_host (default server: {keep_default_server})"),
            &loopback,
            &|method, path, headers| {
                nginx
                    .try_request(method, path, headers)
                    .map_err(|e| e.to_string())
            },
        );
        if !keep_default_server {
            // Without the default server the loopback Host reaches kited, which refuses it.
            let reply = nginx.request("GET", "/api/token/status", &[("Host", &loopback)]);
            assert_eq!(reply.status, 421, "{}", reply.text());
        }
    }
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
