//! HTTP requests for the tests, plain and TLS, made with the maintained `ureq` client and set up
//! so a test sees what the server said: redirects are never followed, a 4xx or 5xx is a reply (not an
//! error), nothing is retried or pooled, every request has a deadline, and a body shorter than
//! its `Content-Length` is an `UnexpectedEof` error rather than a short body.
//!
//! [`raw`] is the one hand-made part: it writes bytes exactly as given, for the tests that send
//! what no well-behaved client would (broken heads, lying lengths, slow or huge requests).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a request may take when the caller does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP reply as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    /// Header names lowercased, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// The body with any transfer coding removed.
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

/// Any request with [`DEFAULT_TIMEOUT`]. `Host` comes from the URL unless `headers` names one;
/// `Content-Length` is set from `body` for methods that carry one.
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
    send(method, url, headers, body.to_vec(), timeout, None)
}

/// [`request_with_timeout`] connected to `to` whatever the URL's host resolves to, as a browser
/// told to map a name does: `https://kited.test:PORT/...` reaches a proxy under test on loopback
/// with `kited.test` as the TLS server name. The certificate is not verified: it comes from the
/// proxy's own test CA.
pub fn request_to(
    to: SocketAddr,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<HttpReply> {
    send(method, url, headers, body.to_vec(), timeout, Some(to))
}

/// A resolver that answers every name with one address.
#[derive(Debug)]
struct FixedAddress(SocketAddr);

impl ureq::unversioned::resolver::Resolver for FixedAddress {
    fn resolve(
        &self,
        _uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let mut addresses = self.empty();
        addresses.push(self.0);
        Ok(addresses)
    }
}

fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl ureq::AsSendBody,
    timeout: Duration,
    to: Option<SocketAddr>,
) -> io::Result<HttpReply> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .allow_non_standard_methods(true)
        .user_agent(ureq::config::AutoHeaderValue::None)
        .accept(ureq::config::AutoHeaderValue::None)
        .accept_encoding(ureq::config::AutoHeaderValue::None)
        .timeout_global(Some(timeout))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .disable_verification(to.is_some())
                .build(),
        )
        .build();
    let agent = match to {
        Some(to) => ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            FixedAddress(to),
        ),
        None => config.into(),
    };
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{method} {url}: {e}")))?;
    let mut response = agent.run(request).map_err(|e| to_io(e, url, timeout))?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_ascii_lowercase(), value)
        })
        .collect();
    let body = response
        .body_mut()
        .read_to_vec()
        .map_err(|e| to_io(e, url, timeout))?;
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

/// Maps ureq's error to the `io::ErrorKind` tests look at: `TimedOut` for a deadline,
/// `UnexpectedEof` for a reply cut short, the socket's own kind otherwise.
fn to_io(error: ureq::Error, url: &str, timeout: Duration) -> io::Error {
    match error {
        ureq::Error::Timeout(what) => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{url}: no complete reply within {timeout:?} ({what})"),
        ),
        ureq::Error::Io(e) => io::Error::new(e.kind(), format!("{url}: {e}")),
        other => io::Error::other(format!("{url}: {other}")),
    }
}

/// Writes `bytes` to `addr` as they are and returns whatever came back: up to the end of the
/// first complete reply, the peer closing, or `timeout`. Write errors (a server that closes early
/// on hostile input) are not fatal: the reply, if any, is still read.
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
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
            return Ok(received);
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(received),
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if reply_is_complete(&received) {
                    return Ok(received);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(received)
            }
            // A reset after (part of) a reply still leaves the reply to read.
            Err(_) if !received.is_empty() => return Ok(received),
            Err(e) => return Err(e),
        }
    }
}

/// Whether `bytes` hold one whole reply: a head, then as many body bytes as `Content-Length`
/// says, or a chunked body up to its last chunk. A reply without either runs to the close.
fn reply_is_complete(bytes: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(bytes) else {
        return false;
    };
    let body = &bytes[head_len..];
    if matches!(response.code, Some(100..=199 | 204 | 304)) {
        return true;
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    match header("content-length").and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(length) => body.len() >= length,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_complete_at_its_length_or_last_chunk() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert!(reply_is_complete(full));
        assert!(!reply_is_complete(&full[..full.len() - 1]));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        assert!(reply_is_complete(chunked));
        assert!(!reply_is_complete(&chunked[..chunked.len() - 2]));
        assert!(reply_is_complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert!(!reply_is_complete(b"HTTP/1.1 200 OK\r\n\r\nto the close"));
    }
}
