//! The operations guide's Caddy and nginx recipes, read from `docs/operations.md` and run as
//! written (only the name, ports and certificate paths swapped) in front of a real kited's
//! public listener: the login works through them and no loopback-only route does, and so with
//! the dangerous variants the guide warns against.

use kite_tests::caddy::{self, Caddy, PUBLIC_HOST};
use kite_tests::http_client::{self, HttpReply};
use kite_tests::nginx::{Nginx, NginxDir};
use kite_tests::recipe::{recipe, substitute};
use serde_json::json;

use crate::public_listener::{login_link, port_of, public_daemon, Public, LOOPBACK_ONLY};

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
