//! A plain-text IP echo on loopback, like api.ipify.org: it answers an address, an HTML page, a
//! megabyte of garbage, or nothing at all (it holds the connection open), as the test says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the echo answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Echo {
    /// This text as the whole body (an address, or anything else).
    Text(String),
    /// A rate-limit page, as a misconfigured proxy in front of the echo would send.
    Html,
    /// A megabyte of digits and dots: no address, and far more than anyone should read.
    Megabyte,
    /// Accepts and never answers.
    Hang,
}

struct Shared {
    echo: Mutex<Echo>,
    stop: AtomicBool,
    connections: AtomicUsize,
    /// Connections held open by [`Echo::Hang`], closed when the echo stops.
    held: Mutex<Vec<TcpStream>>,
}

pub struct IpEcho {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl IpEcho {
    pub fn start(echo: Echo) -> IpEcho {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the IP echo");
        let addr = listener.local_addr().expect("the IP echo's address");
        let shared = Arc::new(Shared {
            echo: Mutex::new(echo),
            stop: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            held: Mutex::new(Vec::new()),
        });
        let server = shared.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if server.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                server.connections.fetch_add(1, Ordering::SeqCst);
                let echo = server.echo.lock().unwrap().clone();
                if echo == Echo::Hang {
                    server.held.lock().unwrap().push(stream);
                    continue;
                }
                std::thread::spawn(move || answer(stream, &echo));
            }
        });
        IpEcho {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT/`, for `readiness.ip_echo_url`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn set(&self, echo: Echo) {
        *self.shared.echo.lock().unwrap() = echo;
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

/// Reads the request head, then answers `echo`. A client that stops reading early (as kited
/// does after a few KiB) ends the write with an error, which is the point.
fn answer(mut stream: TcpStream, echo: &Echo) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let (content_type, body): (&str, Vec<u8>) = match echo {
        Echo::Text(text) => ("text/plain", text.as_bytes().to_vec()),
        Echo::Html => (
            "text/html",
            b"<html><head><title>429</title></head><body>Too many requests</body></html>".to_vec(),
        ),
        Echo::Megabyte => ("text/plain", b"1.2.".repeat(256 * 1024)),
        Echo::Hang => return,
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

impl Drop for IpEcho {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.shared.held.lock().unwrap().clear();
    }
}
