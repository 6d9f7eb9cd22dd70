//! The Redis sink: a real kited writes the token into a real `redis-server` (SET with the
//! cutoff as EXAT, DEL when it dies) and publishes the events beside it; Redis that is down,
//! restarted empty, refusing the password, limited by ACLs, behind TLS with a private CA, or
//! answering garbage; `check-config` and the password kept out of everything kited writes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use kite_proto::SinkStatus;
use kite_tests::harness::eventually;
use kite_tests::redis_server::{RedisOptions, RedisServer, Resp, Value};
use kite_tests::Daemon;
use serde_json::Value as Json;

use crate::helper::{get_token, login_headless, sim, status};

const KEY: &str = "kite:default:token";
const CHANNEL: &str = "kite:default:events";
/// How long kited may take to put the state into a Redis that came (back) up: its first retry
/// waits 1 s and the waits double, so a few seconds; the margin is for a loaded CI machine.
const CATCH_UP: Duration = Duration::from_secs(15);
/// An answer that must not wait for Redis.
const AT_ONCE: Duration = Duration::from_secs(1);

fn config(sink: &str) -> String {
    format!("[notify]\ndesktop = false\n\n[sinks.redis]\n{sink}\n")
}

fn redis_sink(daemon: &Daemon) -> SinkStatus {
    let sinks = status(daemon).sinks;
    assert_eq!(sinks.len(), 1, "{sinks:?}");
    assert_eq!(sinks[0].name, "redis");
    sinks[0].clone()
}

fn wait_sink_ok(daemon: &Daemon) {
    eventually(CATCH_UP, "the redis sink to report ok", || {
        redis_sink(daemon).ok
    });
}

fn wait_sink_error(daemon: &Daemon) -> String {
    let mut error = String::new();
    eventually(CATCH_UP, "the redis sink to report an error", || {
        let sink = redis_sink(daemon);
        error = sink.error.clone().unwrap_or_default();
        !sink.ok && !error.is_empty() && !error.starts_with("connecting")
    });
    error
}

/// A client subscribed to `channel`, past the subscription's confirmation.
fn subscriber(redis: &RedisServer, channel: &str) -> Resp {
    let mut client = redis.client();
    let confirmation = client.command(&["SUBSCRIBE", channel]);
    assert!(
        matches!(&confirmation, Value::Array(Some(items)) if items[0].text() == Some("subscribe")),
        "{confirmation:?}"
    );
    client
}

/// The next message on a subscription, as (raw text, JSON).
fn next_message(client: &mut Resp) -> (String, Json) {
    let value = client
        .read_within(CATCH_UP)
        .expect("no message on the channel");
    let Value::Array(Some(items)) = value else {
        panic!("not a pub/sub message: {value:?}");
    };
    assert_eq!(items[0].text(), Some("message"), "{items:?}");
    let text = items[2].text().expect("a message payload").to_string();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    (text, json)
}

fn get(redis: &RedisServer, key: &str) -> Option<String> {
    match redis.client().command(&["GET", key]) {
        Value::Bulk(value) => value,
        other => panic!("GET {key}: {other:?}"),
    }
}

fn ttl(redis: &RedisServer, key: &str) -> i64 {
    match redis.client().command(&["TTL", key]) {
        Value::Integer(n) => n,
        other => panic!("TTL {key}: {other:?}"),
    }
}

/// `kited --config <the daemon's config> check-config`, with the daemon's environment.
fn check_config(daemon: &Daemon) -> std::process::Output {
    let config = daemon.config_path().expect("a config file");
    let config = config.to_str().expect("a UTF-8 path");
    daemon
        .kited_command(&["--config", config, "check-config"])
        .output()
        .expect("cannot run kited check-config")
}

#[test]
fn a_login_sets_the_key_until_the_cutoff_and_a_logout_deletes_it() {
    let redis = RedisServer::start(RedisOptions::default());
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&config(&format!("url = \"{}\"", redis.url())))
        .start();
    // At start without a token, the key is deleted: the sink reports ok once that went through.
    wait_sink_ok(&d);
    let mut bot = subscriber(&redis, CHANNEL);

    let started = Instant::now();
    let token = login_headless(&d);
    let answered = started.elapsed();
    let (line, event) = next_message(&mut bot);
    let value = get(&redis, KEY).expect("the key right after the event");
    let read = started.elapsed();
    println!(
        "redis sink: login answered in {answered:?}; a SUBSCRIBE client had the event and \
         the new key {read:?} after the login started ({:?} after its answer)",
        read - answered
    );
    assert!(read < Duration::from_secs(1), "{read:?}");

    assert_eq!(event["event"], "token_new", "{line}");
    assert!(event["at"].is_string(), "{line}");
    assert!(
        !line.contains(&token),
        "the event carries the token: {line}"
    );
    let value: Json = serde_json::from_str(&value).unwrap();
    let now = status(&d);
    assert_eq!(value["access_token"], token.as_str());
    assert_eq!(value["api_key"], sim.api_key().as_str());
    assert_eq!(value["user_id"].as_str(), now.user_id.as_deref());
    assert_eq!(value["expires_at"].as_str(), now.expires_at.as_deref());
    assert_eq!(value["login_time"].as_str(), now.login_time.as_deref());
    assert_eq!(value.as_object().unwrap().len(), 5, "{value}");
    let left = now.seconds_left.expect("seconds left");
    let ttl = ttl(&redis, KEY);
    assert!((left - ttl).abs() <= 2, "TTL {ttl} vs {left} s left");
    assert!(redis_sink(&d).ok);

    let answer = d.request(&serde_json::json!({"op": "logout"}));
    assert_eq!(answer["ok"], true, "{answer}");
    let (line, event) = next_message(&mut bot);
    assert_eq!(event["event"], "token_invalidated", "{line}");
    assert_eq!(get(&redis, KEY), None, "the key outlived the logout");
    assert!(!d.log().contains(&token));
}

#[test]
fn the_key_goes_at_the_cutoff() {
    let cutoff = "2026-11-24T06:00:00+05:30";
    let sim = sim();
    sim.set_login_time(Some("2026-11-23 09:00:00".into()));
    let redis = RedisServer::start(RedisOptions::default());
    let fake_now =
        chrono::DateTime::parse_from_rfc3339(cutoff).unwrap() - chrono::Duration::seconds(8);
    let d = Daemon::builder(&sim)
        .config_toml(&config(&format!("url = \"{}\"", redis.url())))
        .env("KITED_FAKE_NOW", &fake_now.to_rfc3339())
        .start();
    wait_sink_ok(&d);
    let mut bot = subscriber(&redis, CHANNEL);
    login_headless(&d);
    assert_eq!(next_message(&mut bot).1["event"], "token_new");
    let value: Json = serde_json::from_str(&get(&redis, KEY).expect("the key")).unwrap();
    assert_eq!(value["expires_at"], cutoff);
    // EXAT follows kited's clock: the key lives as long as the token has left, not longer.
    let ttl = ttl(&redis, KEY);
    assert!((1..=8).contains(&ttl), "TTL {ttl}");
    let (line, event) = next_message(&mut bot);
    assert_eq!(event["event"], "token_expired", "{line}");
    assert_eq!(get(&redis, KEY), None);
}

#[test]
fn redis_down_at_login_gets_the_key_when_it_comes_up_and_again_after_a_restart() {
    let mut redis = RedisServer::new(RedisOptions::default());
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&config(&format!("url = \"{}\"", redis.url())))
        .start();
    let error = wait_sink_error(&d);
    assert!(error.contains("cannot connect"), "{error}");
    let token = login_headless(&d);
    let asked = Instant::now();
    assert_eq!(get_token(&d), token);
    assert!(asked.elapsed() < AT_ONCE, "{:?}", asked.elapsed());

    redis.launch();
    let up = Instant::now();
    eventually(CATCH_UP, "the key in a Redis that came up", || {
        get(&redis, KEY).is_some_and(|v| v.contains(&token))
    });
    println!(
        "redis sink: key written {:?} after Redis came up",
        up.elapsed()
    );
    wait_sink_ok(&d);

    // Restarted empty (no persistence): kited notices the closed connection and writes again.
    redis.kill();
    redis.launch();
    assert_eq!(
        get(&redis, KEY),
        None,
        "the restarted Redis should start empty"
    );
    let back = Instant::now();
    eventually(CATCH_UP, "the key back after a restart", || {
        get(&redis, KEY).is_some_and(|v| v.contains(&token))
    });
    println!("redis sink: key back {:?} after a restart", back.elapsed());
    assert!(d.log().contains("connection was lost"), "{}", d.log());
}

#[test]
fn a_wrong_password_shows_in_status_and_never_anywhere_else() {
    let password = "Wr0ng-pw-7f3a9c";
    let redis = RedisServer::start(RedisOptions {
        default_password: Some("the-right-one".into()),
        ..RedisOptions::default()
    });
    let sim = sim();
    let files = tempfile::tempdir().unwrap();
    let env_dump = files.path().join("env");
    let d = Daemon::builder(&sim)
        .config_toml(&format!(
            "[notify]\ndesktop = false\ncommand = [\"sh\", \"-c\", \"env > {}\"]\n\n\
             [sinks.redis]\nurl = \"{}\"\n",
            env_dump.display(),
            redis.url()
        ))
        .env("KITED_REDIS_PASSWORD", password)
        .start();
    let error = wait_sink_error(&d);
    assert!(
        error.contains("WRONGPASS") || error.contains("authentication"),
        "{error}"
    );
    let token = login_headless(&d);
    let asked = Instant::now();
    let out = d.ctl(&["get-token"]);
    assert!(asked.elapsed() < AT_ONCE, "{:?}", asked.elapsed());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token);
    let json = d.ctl(&["status", "--json"]);
    let json: Json = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["sinks"][0]["name"], "redis", "{json}");
    assert_eq!(json["sinks"][0]["ok"], false, "{json}");
    let human = String::from_utf8_lossy(&d.ctl(&["status"]).stdout).to_string();
    assert!(human.contains("sink:       redis: failing: "), "{human}");

    eventually(CATCH_UP, "notify.command to run", || env_dump.exists());
    eventually(CATCH_UP, "notify.command to finish", || {
        std::fs::read_to_string(&env_dump).is_ok_and(|t| t.contains("KITED_EVENT"))
    });
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(!env.contains("KITED_REDIS_PASSWORD"), "{env}");
    let check = check_config(&d);
    let check = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(
        check.contains("password set (KITED_REDIS_PASSWORD)"),
        "{check}"
    );
    for (what, text) in [
        ("status", json.to_string()),
        ("human status", human),
        ("log", d.log()),
        ("check-config", check),
    ] {
        assert!(
            !text.contains(password),
            "the password is in the {what}: {text}"
        );
    }
}

#[test]
fn an_acl_user_that_may_only_write_the_key_and_a_bot_that_may_only_read_it() {
    let redis = RedisServer::start(RedisOptions {
        users: vec![
            "user kited on >kited-pw resetchannels ~kite:*:token &kite:*:events -@all +set +del +publish".into(),
            "user bot on >bot-pw resetchannels ~kite:*:token &kite:*:events -@all +get +subscribe".into(),
        ],
        ..RedisOptions::default()
    });
    let sim = sim();
    let files = tempfile::tempdir().unwrap();
    let password_file = files.path().join("redis-password");
    std::fs::write(&password_file, "kited-pw\n").unwrap();
    let d = Daemon::builder(&sim)
        .config_toml(&config(&format!(
            "url = \"{}\"\nusername = \"kited\"\npassword_file = \"{}\"",
            redis.url(),
            password_file.display()
        )))
        .start();
    wait_sink_ok(&d);
    let mut bot = Resp::connect(redis.port());
    assert_eq!(
        bot.command(&["AUTH", "bot", "bot-pw"]),
        Value::Simple("OK".into())
    );
    let token = login_headless(&d);
    eventually(
        CATCH_UP,
        "the key",
        || matches!(bot.command(&["GET", KEY]), Value::Bulk(Some(v)) if v.contains(&token)),
    );
    assert!(
        matches!(bot.command(&["SET", KEY, "x"]), Value::Error(e) if e.starts_with("NOPERM")),
        "the bot must not write"
    );
    assert!(redis_sink(&d).ok);
    let check = check_config(&d);
    let check = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(check.contains("user kited"), "{check}");
    assert!(check.contains(&format!(
        "password set (sinks.redis.password_file {})",
        password_file.display()
    )));
    assert!(!check.contains("kited-pw"), "{check}");
}

#[test]
fn rediss_with_a_private_ca() {
    let redis = RedisServer::start(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    });
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&config(&format!(
            "url = \"{}\"\nca_file = \"{}\"",
            redis.url(),
            redis.ca_file().display()
        )))
        .start();
    wait_sink_ok(&d);
    let token = login_headless(&d);
    eventually(CATCH_UP, "the key over TLS", || {
        String::from_utf8_lossy(&redis.cli(&["GET", KEY]).stdout).contains(&token)
    });
    // Without the CA, the public roots do not vouch for the test certificate.
    let untrusting = Daemon::builder(&sim)
        .config_toml(&config(&format!("url = \"{}\"", redis.url())))
        .start();
    let error = wait_sink_error(&untrusting);
    assert!(error.contains("cannot connect"), "{error}");
}

/// A TCP server on loopback that answers every connection with `reply` (or nothing at all).
fn fake_server(reply: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buffer = [0u8; 1024];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        return;
                    }
                    if let Some(reply) = reply {
                        let _ = stream.write_all(reply);
                    }
                }
            });
        }
    });
    port
}

#[test]
fn garbage_or_silence_from_the_server_is_a_failure_not_a_crash() {
    let sim = sim();
    for (what, reply) in [
        (
            "garbage",
            Some(&b"HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff junk"[..]),
        ),
        ("silence", None),
    ] {
        let port = fake_server(reply);
        let mut d = Daemon::builder(&sim)
            .config_toml(&config(&format!("url = \"redis://127.0.0.1:{port}/0\"")))
            .start();
        let token = login_headless(&d);
        let error = wait_sink_error(&d);
        assert!(!error.is_empty(), "{what}");
        let asked = Instant::now();
        assert_eq!(get_token(&d), token, "{what}");
        assert!(asked.elapsed() < AT_ONCE, "{what}: {:?}", asked.elapsed());
        assert!(d.is_running(), "{what}: kited died:\n{}", d.log());
    }
}

#[test]
fn check_config_shows_the_sink_and_refuses_a_password_in_the_url() {
    let sim = sim();
    let d = Daemon::builder(&sim)
        .config_toml(&config(
            "url = \"rediss://10.0.0.5:6380/2\"\nkey = \"bots:{profile}:kite\"",
        ))
        .start();
    let out = check_config(&d);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = text
        .lines()
        .find(|l| l.starts_with("sinks.redis"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("rediss://10.0.0.5:6380/2"), "{row}");
    assert!(row.contains("key bots:default:kite"), "{row}");
    assert!(row.contains("channel kite:default:events"), "{row}");
    assert!(row.contains("password missing"), "{row}");

    let secret = "s3cr3t-in-url";
    let bad = config(&format!(
        "url = \"redis://kited:{secret}@127.0.0.1:6379/0\""
    ));
    std::fs::write(d.config_path().unwrap(), &bad).unwrap();
    let out = check_config(&d);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("sinks.redis.url"), "{err}");
    assert!(!err.contains(secret), "{err}");
    let mut refused = Daemon::builder(&sim).config_toml(&bad).spawn();
    let exit = refused
        .wait_exit(Duration::from_secs(10))
        .expect("kited should exit");
    assert_eq!(exit.code(), Some(78));
    assert!(!refused.log().contains(secret), "{}", refused.log());
    assert!(
        refused.log().contains("sinks.redis.url"),
        "{}",
        refused.log()
    );
}
