//! The Redis side of the live-token run: a throwaway `redis-server` for kited's sink, and a
//! subscriber that reads the new key on each `token_new`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::observers::{fingerprint, Seen};
use super::OBSERVER_START_DEADLINE;
use crate::machine::which;

/// A Redis server for the sink, on a free port in its own directory.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Option<Redis> {
        let program = which("redis-server")?;
        let dir = tempfile::tempdir().ok()?;
        let port = kite_tests::harness::free_port();
        let child = Command::new(program)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + OBSERVER_START_DEADLINE;
        while std::time::Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One RESP command as an array of bulk strings.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// Reads one RESP value (the subset Redis answers these commands with) as text parts.
fn read_resp(reader: &mut impl BufRead, parts: &mut Vec<Option<String>>) -> std::io::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end();
    let bad = || std::io::Error::other(format!("unexpected RESP line {line:?}"));
    match line.as_bytes().first() {
        Some(b'*') => {
            let n: i64 = line[1..].parse().map_err(|_| bad())?;
            for _ in 0..n.max(0) {
                read_resp(reader, parts)?;
            }
        }
        Some(b'$') => {
            let n: i64 = line[1..].parse().map_err(|_| bad())?;
            if n < 0 {
                parts.push(None);
            } else {
                let mut buf = vec![0; n as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                parts.push(Some(String::from_utf8_lossy(&buf).into_owned()));
            }
        }
        Some(b'+' | b':') => parts.push(Some(line[1..].to_string())),
        _ => return Err(bad()),
    }
    Ok(())
}

/// The Redis observer: SUBSCRIBE to the sink's channel; on each message, GET the key on a second
/// connection and report the token it holds.
pub fn follow_redis(port: u16, key: String, channel: String, tx: mpsc::Sender<Seen>) -> Option<()> {
    let mut sub = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut get = TcpStream::connect(("127.0.0.1", port)).ok()?;
    sub.write_all(&resp(&["SUBSCRIBE", &channel])).ok()?;
    let mut sub_reader = BufReader::new(sub.try_clone().ok()?);
    let mut parts = Vec::new();
    read_resp(&mut sub_reader, &mut parts).ok()?;
    std::thread::spawn(move || {
        let mut get_reader = match get.try_clone() {
            Ok(stream) => BufReader::new(stream),
            Err(_) => return,
        };
        loop {
            let mut parts = Vec::new();
            if read_resp(&mut sub_reader, &mut parts).is_err() {
                return;
            }
            let is_token_new = parts
                .get(2)
                .and_then(|m| m.as_deref())
                .is_some_and(|m| m.contains("\"token_new\""));
            if !is_token_new {
                continue;
            }
            if get.write_all(&resp(&["GET", &key])).is_err() {
                return;
            }
            let mut value = Vec::new();
            if read_resp(&mut get_reader, &mut value).is_err() {
                return;
            }
            let at = SystemTime::now();
            let token = value
                .first()
                .and_then(|v| v.as_deref())
                .and_then(|v| serde_json::from_str::<Value>(v).ok())
                .and_then(|v| v["access_token"].as_str().map(fingerprint));
            let _ = tx.send(Seen {
                observer: "redis",
                at,
                fingerprint: token,
            });
        }
    });
    Some(())
}
