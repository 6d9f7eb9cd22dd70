//! A small blocking HTTP/1.1 client on `std::net::TcpStream`, for tests that must see (or send)
//! exactly the bytes on the wire: redirects are never followed, nothing is retried, every read has
//! a deadline, and a reply shorter than its `Content-Length` is an error rather than a short body.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a request may take when the caller does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP reply as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub reason: String,
    /// Header names lowercased, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The body with any chunked transfer coding removed.
    pub body: Vec<u8>,
}

impl HttpReply {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Lowercased names to values; repeated headers are joined with ", ".
    pub fn header_map(&self) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = HashMap::new();
        for (name, value) in &self.headers {
            map.entry(name.clone())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(value);
                })
                .or_insert_with(|| value.clone());
        }
        map
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body in the message when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}); got HTTP {} {:?}: {}",
                self.status,
                self.header("content-type"),
                self.text()
            )
        })
    }

    /// The media type of `Content-Type` without parameters, lowercased (`application/json`).
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// `GET url`.
pub fn get(url: &str) -> io::Result<HttpReply> {
    request("GET", url, &[], b"")
}

/// `POST url` with a form-encoded body, as Kite's clients send it.
pub fn post_form(url: &str, pairs: &[(&str, &str)]) -> io::Result<HttpReply> {
    let body = encode_form(pairs);
    request(
        "POST",
        url,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

/// `POST url` with a JSON body.
pub fn post_json(url: &str, value: &serde_json::Value) -> io::Result<HttpReply> {
    request(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        value.to_string().as_bytes(),
    )
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

/// Any request with [`DEFAULT_TIMEOUT`]. `Host` (from the URL), `Connection: close` and
/// `Content-Length` are added unless `headers` names them.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpReply> {
    request_with_timeout(method, url, headers, body, DEFAULT_TIMEOUT)
}

/// [`request`] with a deadline for the whole exchange (connect, write, read).
pub fn request_with_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpReply> {
    let parsed = url::Url::parse(url)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad URL {url}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("only http:// URLs are supported, got {url}"),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URL has no host"))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = (host.trim_matches(['[', ']']), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host did not resolve"))?;
    let mut target = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        target.push('?');
        target.push_str(q);
    }
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    let wants_length = !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH");
    if wants_length && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    let reply = exchange(addr, &bytes, timeout, method == "HEAD")?;
    parse_reply(&reply.bytes, true, method == "HEAD")
        .and_then(|parsed| {
            parsed.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a full reply",
                )
            })
        })
        .map_err(|e| {
            if reply.timed_out && reply.bytes.is_empty() {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no reply from {url} within {timeout:?}"),
                )
            } else if reply.timed_out {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("incomplete reply from {url} within {timeout:?}: {e}"),
                )
            } else {
                e
            }
        })
}

/// Writes `bytes` to `addr` as they are and returns whatever came back: up to the end of the
/// first complete reply, the peer closing, or `timeout`. Write errors (a server that closes early
/// on hostile input) are not fatal: the reply, if any, is still read.
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    Ok(exchange(addr, bytes, timeout, false)?.bytes)
}

struct Received {
    bytes: Vec<u8>,
    timed_out: bool,
}

fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
    head_only: bool,
) -> io::Result<Received> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    // A server may answer and close before taking all of a hostile request; keep what it said.
    let _ = stream.write_all(bytes).and_then(|_| stream.flush());
    let mut received = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Received {
                bytes: received,
                timed_out: true,
            });
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if let Ok(Some(_)) = parse_reply(&received, false, head_only) {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Received {
                    bytes: received,
                    timed_out: true,
                });
            }
            // A reset after (part of) a reply still leaves the reply to parse.
            Err(_) if !received.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(Received {
        bytes: received,
        timed_out: false,
    })
}

/// Parses one reply from `bytes`. `Ok(None)`: not complete yet (only when `eof` is false).
/// With `eof`, a reply cut short (fewer body bytes than `Content-Length`, an unfinished chunked
/// body, or an unfinished head) is an `UnexpectedEof` error.
pub fn parse_reply(bytes: &[u8], eof: bool, head_only: bool) -> io::Result<Option<HttpReply>> {
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        return incomplete(eof, "reply head is unfinished");
    };
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(&format!(
            "not an HTTP/1 status line: {status_line:?}"
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(&format!("bad status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(&format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let rest = &bytes[head_end + 4..];
    let reply = |body: Vec<u8>| HttpReply {
        status,
        reason: reason.clone(),
        headers: headers.clone(),
        body,
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Some(reply(Vec::new())));
    }
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return match decode_chunked(rest)? {
            Some(body) => Ok(Some(reply(body))),
            None => incomplete(eof, "chunked body is unfinished"),
        };
    }
    if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(&format!("bad Content-Length {len:?}")))?;
        return if rest.len() >= len {
            Ok(Some(reply(rest[..len].to_vec())))
        } else {
            incomplete(
                eof,
                &format!("body has {} of {len} announced bytes", rest.len()),
            )
        };
    }
    // No length: the body runs to the end of the connection.
    if eof {
        Ok(Some(reply(rest.to_vec())))
    } else {
        Ok(None)
    }
}

fn decode_chunked(mut data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&data[..line_end]).map_err(|_| invalid("chunk size"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid(&format!("bad chunk size {line:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find(data, b"\r\n") else {
                    return Ok(None);
                };
                if end == 0 {
                    return Ok(Some(body));
                }
                data = &data[end + 2..];
            }
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn incomplete(eof: bool, what: &str) -> io::Result<Option<HttpReply>> {
    if eof {
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            what.to_string(),
        ))
    } else {
        Ok(None)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: a\r\nx: b\r\n\r\nhi",
            true,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hi"[..]));
        assert_eq!(r.header_all("X"), vec!["a", "b"]);
        assert_eq!(r.header_map()["x"], "a, b");
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n3;x=y\r\n th\r\n0\r\n\r\n",
            true,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.text(), "hi th");
    }

    #[test]
    fn short_body_is_an_error_at_eof() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhi";
        assert!(parse_reply(bytes, false, false).unwrap().is_none());
        let err = parse_reply(bytes, true, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
