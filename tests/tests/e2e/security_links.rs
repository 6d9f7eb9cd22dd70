//! Leaked login links against a real kited: a flood through one link evicts no other login,
//! `kitectl login --revoke-links` and logout kill every link issued, and the first Zerodha user
//! is pinned so a link holder cannot swap in their own account.

use kite_tests::caddy::{self, PUBLIC_HOST};
use kite_tests::{follow_browser_login, Daemon};
use serde_json::{json, Value};

use crate::helper::{get_token, login_headless, login_urls, sim, status, text};

/// How often the flood hits one link.
const FLOOD: usize = 1000;

/// A kited with a public URL (no proxy: requests carry the public `Host` straight to kited's
/// loopback port, as the proxy would forward them).
struct Public {
    daemon: Daemon,
    host: String,
    public: String,
}

fn public_daemon() -> Public {
    let port = caddy::reserve_port();
    let public = caddy::public_url(port);
    let daemon = Daemon::builder(&sim())
        .config_toml(&format!(
            "[http]\npublic_url = \"{public}\"\n\n[notify]\ndesktop = false\n"
        ))
        .start();
    Public {
        daemon,
        host: format!("{PUBLIC_HOST}:{port}"),
        public,
    }
}

impl Public {
    fn link(&self) -> String {
        let answer = self.daemon.request(&json!({"op": "login_link"}));
        assert_eq!(answer["ok"], json!(true), "{answer}");
        answer["link"].as_str().unwrap().to_string()
    }

    /// `GET` a link as the phone would: (status, the Kite login URL it redirects to).
    fn open(&self, link: &str) -> (u16, Option<String>) {
        let path = link.trim_start_matches(&self.public);
        let reply = self.daemon.http("GET", path, &[("Host", &self.host)], b"");
        (reply.status, reply.header("location").map(str::to_string))
    }
}

#[test]
fn a_flood_through_a_leaked_link_evicts_no_other_login() {
    let p = public_daemon();
    // The owner's login, started with kitectl, and another link's login, both in flight.
    let (kitectl_login, _) = login_urls(&p.daemon);
    let (leaked, other) = (p.link(), p.link());
    assert_ne!(leaked, other, "each link is its own");
    let (status, other_login) = p.open(&other);
    assert_eq!(status, 303);
    let other_login = other_login.expect("a Location");

    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..FLOOD {
        *statuses.entry(p.open(&leaked).0).or_default() += 1;
    }
    assert_eq!(
        statuses.get(&303).copied(),
        Some(10),
        "ten logins a minute per link: {statuses:?}"
    );
    assert_eq!(
        statuses.get(&429).copied(),
        Some(FLOOD - 10),
        "{statuses:?}"
    );

    let (code, page) = follow_browser_login(&p.daemon, &kitectl_login);
    assert_eq!(code, 200, "the kitectl login was evicted: {page}");
    let (code, page) = follow_browser_login(&p.daemon, &other_login);
    assert_eq!(code, 200, "the other link's login was evicted: {page}");
    assert!(page.contains("Logged in as"), "{page}");
}

#[test]
fn revoking_links_and_logging_out_kill_every_issued_link() {
    let mut p = public_daemon();
    let first = p.link();
    let (status, started) = p.open(&first);
    assert_eq!(status, 303);
    let started = started.expect("a Location");

    let out = p.daemon.ctl(&["login", "--revoke-links"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("now invalid"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(p.open(&first).0, 403, "a revoked link");
    // The login that link had started dies with it.
    let (code, page) = follow_browser_login(&p.daemon, &started);
    assert_eq!(code, 400, "{page}");

    // New links work, across a restart too; the IPC op does the same as kitectl.
    let second = p.link();
    assert_eq!(p.open(&second).0, 303);
    p.daemon.restart();
    assert_eq!(p.open(&second).0, 303, "the key is kept in the store");
    let answer: Value = p.daemon.request(&json!({"op": "revoke_links"}));
    assert_eq!(answer, json!({"ok": true}));
    assert_eq!(p.open(&second).0, 403);
    p.daemon.restart();
    assert_eq!(p.open(&second).0, 403, "revoked for good");

    // Logout kills links too.
    let third = p.link();
    login_headless(&p.daemon);
    assert_eq!(p.open(&third).0, 303);
    let out = p.daemon.ctl(&["logout"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(p.open(&third).0, 403, "a link outlived the logout");
}

#[test]
fn the_first_user_is_pinned_until_logout() {
    let mut p = public_daemon();
    let sim = p.daemon.sim().clone();
    let owner_token = login_headless(&p.daemon);
    let owner = status(&p.daemon).user_id.expect("a user");
    assert_eq!(
        status(&p.daemon).pinned_user_id.as_deref(),
        Some(owner.as_str())
    );
    assert!(
        p.daemon
            .log()
            .contains(&format!("pinned Zerodha user {owner}")),
        "{}",
        p.daemon.log()
    );
    p.daemon.restart();

    // Someone with a leaked link logs in with their own Zerodha account.
    sim.set_user("ZZ9999", "Link Holder");
    let (status_code, login) = p.open(&p.link());
    assert_eq!(status_code, 303);
    let (code, page) = follow_browser_login(&p.daemon, &login.expect("a Location"));
    assert_eq!(code, 403, "{page}");
    assert!(
        page.contains("ZZ9999") && page.contains("kitectl logout"),
        "the page says why: {page}"
    );
    assert_eq!(
        get_token(&p.daemon),
        owner_token,
        "the owner's token is kept"
    );
    assert_eq!(
        status(&p.daemon).pinned_user_id.as_deref(),
        Some(owner.as_str())
    );

    // After logout the next user is pinned instead.
    let out = p.daemon.ctl(&["logout"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(status(&p.daemon).pinned_user_id, None);
    login_headless(&p.daemon);
    assert_eq!(status(&p.daemon).user_id.as_deref(), Some("ZZ9999"));
    assert_eq!(status(&p.daemon).pinned_user_id.as_deref(), Some("ZZ9999"));
}
