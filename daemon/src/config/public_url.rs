//! The public face behind a TLS reverse proxy: what `http.public_url` says, which `Host` names
//! it, and the few routes a request to that host may reach.

use hyper::Method;

/// `http.public_url`, checked: scheme, host and an optional port, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https://kite.example.com` or `https://kite.example.com:8443`, no trailing slash.
    base: String,
    scheme: String,
    /// Lowercase; IPv6 literals keep their brackets.
    host: String,
    /// The port written in the URL when it is not the scheme's default.
    port: Option<u16>,
}

/// How a request's `Host` relates to this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// The listen address, `localhost:PORT`, `127.0.0.1:PORT`, or a loopback `public_url`:
    /// every route.
    Loopback,
    /// The public host of `http.public_url`: only [`reaches_public`] routes.
    Public,
    /// Anything else (DNS rebinding, a stray proxy): refused.
    Foreign,
}

impl PublicUrl {
    /// Parses `http.public_url`; the error says what is wrong in a sentence.
    pub fn parse(text: &str) -> Result<PublicUrl, String> {
        let trimmed = text.trim().trim_end_matches('/');
        let url = url::Url::parse(trimmed)
            .map_err(|e| format!("{text:?} is not a URL like https://kite.example.com ({e})"))?;
        let scheme = url.scheme().to_string();
        if scheme != "https" && scheme != "http" {
            return Err(format!(
                "{text:?} must start with https:// (the TLS proxy's address)"
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?} must not carry a user name or password"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{text:?} has a path, query or fragment; give only scheme, host and port \
                 (kited serves /auth/callback and /login at the root of that host)"
            ));
        }
        let host = match url.host() {
            Some(host) => host.to_string().to_ascii_lowercase(),
            None => return Err(format!("{text:?} has no host")),
        };
        let port = url.port();
        let base = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        Ok(PublicUrl {
            base,
            scheme,
            host,
            port,
        })
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Why this URL is unsafe, if it is: plain http:// to a host other than this machine sends
    /// the login links and Kite's request tokens across the network unencrypted.
    pub fn plain_http_warning(&self) -> Option<String> {
        (self.scheme == "http" && !self.is_loopback()).then(|| {
            format!(
                "http.public_url {self} is plain http:// for a host other than this machine: \
                 login links and Kite's request tokens would cross the network unencrypted; \
                 put a TLS proxy in front of kited and give its https:// address"
            )
        })
    }

    /// Whether the host is a loopback name: then it is not public at all, and keeps every route.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host == "[::1]"
            || self
                .host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether a `Host` header names this URL: the host matched case-insensitively, the port
    /// exactly, or omitted when the URL uses the scheme's default port.
    pub fn names(&self, host_header: &str) -> bool {
        let (host, port) = split_host_port(host_header);
        if !host.eq_ignore_ascii_case(&self.host) {
            return false;
        }
        let default = if self.scheme == "https" { 443 } else { 80 };
        match (port, self.port) {
            (None, None) => true,
            (Some(p), None) => p == default,
            (Some(p), Some(q)) => p == q,
            (None, Some(_)) => false,
        }
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// `host[:port]` with a numeric port; a bad port yields a port of 0 (which matches nothing).
fn split_host_port(text: &str) -> (&str, Option<u16>) {
    let split = match text.rfind(':') {
        // An IPv6 literal without a port ends with `]`.
        Some(i) if !text[i..].contains(']') => Some(i),
        _ => None,
    };
    match split {
        Some(i) => (&text[..i], Some(text[i + 1..].parse().unwrap_or(0))),
        None => (text, None),
    }
}

/// Classifies a request's `Host`: loopback names of the listening port, the public host, or
/// neither. Never looks at `X-Forwarded-*`: only what the client itself sent as `Host`.
pub fn classify(
    host: Option<&str>,
    port: u16,
    listen: &str,
    public: Option<&PublicUrl>,
) -> HostKind {
    let Some(host) = host else {
        return HostKind::Foreign;
    };
    if host == listen || host == format!("localhost:{port}") || host == format!("127.0.0.1:{port}")
    {
        return HostKind::Loopback;
    }
    match public {
        Some(url) if url.names(host) && url.is_loopback() => HostKind::Loopback,
        Some(url) if url.names(host) => HostKind::Public,
        _ => HostKind::Foreign,
    }
}

/// The routes the public host reaches: Kite's redirect, the login links, health, the callback
/// page's own stylesheet and icons, and (when enabled) Kite's postbacks. Everything else — the
/// token page, the JSON API, the widgets — stays on loopback.
pub fn reaches_public(method: &Method, path: &str, postbacks: bool) -> bool {
    match *method {
        Method::GET | Method::HEAD => matches!(
            path,
            "/auth/callback"
                | "/login"
                | "/healthz"
                | "/favicon.ico"
                | "/static/icon.svg"
                | "/static/app.css"
        ),
        Method::POST => postbacks && path == "/kite/postback",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_this_machine_is_warned_about() {
        let warning = |text: &str| PublicUrl::parse(text).unwrap().plain_http_warning();
        assert!(warning("http://kite.example.com").is_some_and(|w| w.contains("http.public_url")));
        assert!(warning("http://192.168.1.5:8079").is_some());
        assert_eq!(warning("https://kite.example.com"), None);
        assert_eq!(warning("http://127.0.0.1:8079"), None);
        assert_eq!(warning("http://localhost:8079"), None);
    }

    #[test]
    fn parses_scheme_host_port_only() {
        let url = PublicUrl::parse("https://Kite.Example.com/").unwrap();
        assert_eq!(url.to_string(), "https://kite.example.com");
        assert!(!url.is_loopback());
        let url = PublicUrl::parse("https://kite.example.com:8443").unwrap();
        assert_eq!(url.to_string(), "https://kite.example.com:8443");
        // The scheme's default port is dropped by the URL parser.
        assert_eq!(
            PublicUrl::parse("https://kite.example.com:443")
                .unwrap()
                .to_string(),
            "https://kite.example.com"
        );
        for bad in [
            "https://kite.example.com/kited",
            "https://kite.example.com/?x=1",
            "https://kite.example.com/#x",
            "ftp://kite.example.com",
            "https://me:pw@kite.example.com",
            "kite.example.com",
            "",
        ] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(PublicUrl::parse("http://127.0.0.1:8079")
            .unwrap()
            .is_loopback());
        assert!(PublicUrl::parse("http://localhost:9000")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn host_names_match_case_insensitively_with_default_ports() {
        let url = PublicUrl::parse("https://kite.example.com").unwrap();
        for good in [
            "kite.example.com",
            "KITE.example.COM",
            "kite.example.com:443",
        ] {
            assert!(url.names(good), "{good}");
        }
        for bad in [
            "kite.example.com:80",
            "kite.example.com:8443",
            "kite.example.com.evil.net",
            "evil.kite.example.com",
            "kite.example.com:x",
        ] {
            assert!(!url.names(bad), "{bad}");
        }
        let url = PublicUrl::parse("https://kited.test:8443").unwrap();
        assert!(url.names("kited.test:8443"));
        assert!(!url.names("kited.test"));
        assert!(!url.names("kited.test:443"));
    }

    #[test]
    fn classifies_hosts() {
        let public = PublicUrl::parse("https://kite.example.com").unwrap();
        let c = |host| classify(host, 8079, "127.0.0.1:8079", Some(&public));
        assert_eq!(c(Some("127.0.0.1:8079")), HostKind::Loopback);
        assert_eq!(c(Some("localhost:8079")), HostKind::Loopback);
        assert_eq!(c(Some("kite.example.com")), HostKind::Public);
        assert_eq!(c(Some("evil.net")), HostKind::Foreign);
        assert_eq!(c(Some("localhost")), HostKind::Foreign);
        assert_eq!(c(None), HostKind::Foreign);
        let local = PublicUrl::parse("http://localhost:9000").unwrap();
        assert_eq!(
            classify(Some("localhost:9000"), 8079, "127.0.0.1:8079", Some(&local)),
            HostKind::Loopback
        );
    }

    #[test]
    fn the_public_host_reaches_few_routes() {
        for path in [
            "/auth/callback",
            "/login",
            "/healthz",
            "/favicon.ico",
            "/static/app.css",
        ] {
            assert!(reaches_public(&Method::GET, path, false), "{path}");
        }
        for path in [
            "/",
            "/api/token/status",
            "/api/token/refresh-info",
            "/api/token/callback-url",
            "/static/app.js",
            "/static/kite-token-flow.js",
        ] {
            assert!(!reaches_public(&Method::GET, path, true), "{path}");
        }
        assert!(!reaches_public(
            &Method::POST,
            "/api/token/generate-access-token",
            true
        ));
        assert!(!reaches_public(&Method::POST, "/kite/postback", false));
        assert!(reaches_public(&Method::POST, "/kite/postback", true));
        assert!(!reaches_public(&Method::POST, "/auth/callback", true));
        assert!(!reaches_public(&Method::OPTIONS, "/login", true));
    }
}
