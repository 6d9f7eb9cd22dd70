//! `http.public_listen`: the second listener, for the reverse proxy, that serves only the public
//! routes whatever the `Host` header says; a TCP address or a Unix socket path.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Where the proxy reaches kited's public side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicListen {
    /// `127.0.0.1:8080` (or `localhost:8080`, `[::1]:8080`).
    Tcp(SocketAddr),
    /// An absolute path; the socket file is made world-connectable (see `server::http`), so
    /// the directory it lives in decides who may reach it.
    Unix(PathBuf),
}

impl PublicListen {
    /// Parses `http.public_listen`; the error says what is wrong in a sentence.
    pub fn parse(text: &str) -> Result<PublicListen, String> {
        let text = text.trim();
        if text.starts_with('/') {
            return Ok(PublicListen::Unix(PathBuf::from(text)));
        }
        socket_addr(text).map(PublicListen::Tcp).map_err(|_| {
            format!(
                "{text:?} is neither an address like 127.0.0.1:8080 nor an absolute path \
                     for a Unix socket"
            )
        })
    }
}

impl std::fmt::Display for PublicListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublicListen::Tcp(addr) => write!(f, "{addr}"),
            PublicListen::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A TCP address as the config file may write it: `localhost:PORT` means `127.0.0.1:PORT`.
pub fn socket_addr(text: &str) -> Result<SocketAddr, std::net::AddrParseError> {
    match text.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse(),
        None => text.parse(),
    }
}

/// Loopback, an IPv4-mapped loopback (`::ffff:127.0.0.1`) included.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_socket_paths() {
        assert_eq!(
            PublicListen::parse("127.0.0.1:8080"),
            Ok(PublicListen::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            PublicListen::parse("localhost:8080"),
            Ok(PublicListen::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            PublicListen::parse("/srv/kited/public.sock"),
            Ok(PublicListen::Unix("/srv/kited/public.sock".into()))
        );
        for bad in ["kite.sock", "8080", "example.com:80", ""] {
            assert!(PublicListen::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_addresses() {
        for ip in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["0.0.0.0", "192.0.2.7", "::", "::ffff:192.0.2.7"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
