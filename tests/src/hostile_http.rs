//! A hostile push endpoint: a loopback HTTP/1.1 server that answers each request with raw bytes
//! a test chooses (a decompression bomb, an endless body, an echoed credential), and counts how
//! much of an answer the client actually took.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One answer.
#[derive(Debug, Clone)]
pub enum HostileAnswer {
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// `head` (status line and headers, without the blank line), then body bytes for as long as
    /// the client reads, up to `limit` bytes.
    Endless { head: String, limit: u64 },
}

impl HostileAnswer {
    /// A complete answer with `body` and a Content-Length; `headers` are extra lines.
    pub fn with_body(status: u16, headers: &[&str], body: &[u8]) -> HostileAnswer {
        let mut head = format!("HTTP/1.1 {status} Hostile\r\nConnection: close\r\n");
        for line in headers {
            head.push_str(line);
            head.push_str("\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        HostileAnswer::Raw(bytes)
    }
}

/// A request's head as received: the request line and header lines.
#[derive(Debug, Clone)]
pub struct HostileRequest {
    pub head: String,
}

type Answerer = dyn Fn(usize) -> HostileAnswer + Send + Sync;

struct Shared {
    answer: Box<Answerer>,
    requests: std::sync::Mutex<Vec<HostileRequest>>,
    served: AtomicUsize,
    /// Body bytes written to clients that read them (for [`HostileAnswer::Endless`]).
    body_bytes_taken: AtomicU64,
    stop: AtomicBool,
}

/// The running server; it stops when dropped.
pub struct HostileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl HostileServer {
    /// Serves on `127.0.0.1:0`; `answer(n)` is the answer to the n-th request (from 0).
    pub fn start(answer: impl Fn(usize) -> HostileAnswer + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a local address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let shared = Arc::new(Shared {
            answer: Box::new(answer),
            requests: std::sync::Mutex::new(Vec::new()),
            served: AtomicUsize::new(0),
            body_bytes_taken: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let accept = shared.clone();
        std::thread::spawn(move || {
            while !accept.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let shared = accept.clone();
                        std::thread::spawn(move || serve(stream, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HostileServer { addr, shared }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far.
    pub fn requests(&self) -> Vec<HostileRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Endless-body bytes the clients took before hanging up.
    pub fn body_bytes_taken(&self) -> u64 {
        self.shared.body_bytes_taken.load(Ordering::Relaxed)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let index = shared.served.fetch_add(1, Ordering::Relaxed);
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(HostileRequest { head });
    let mut stream = stream;
    match (shared.answer)(index) {
        HostileAnswer::Raw(bytes) => {
            let _ = stream.write_all(&bytes);
        }
        HostileAnswer::Endless { head, limit } => {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(15)));
            if stream
                .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
                .is_err()
            {
                return;
            }
            let chunk = [b'x'; 16 * 1024];
            let mut sent = 0u64;
            while sent < limit && !shared.stop.load(Ordering::Relaxed) {
                match stream.write(&chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        sent += n as u64;
                        shared
                            .body_bytes_taken
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    let _ = stream.flush();
}
