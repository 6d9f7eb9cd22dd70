//! The `ip` check: asks `readiness.ip_echo_url` which address this host's requests come from
//! and compares it with the static IPs registered for orders. The echo is read warily: a few
//! KiB at most, within `kite.timeout`, and anything but one IP address is a clear failure.

use crate::config::Readiness;
use kite_proto::Check;
use std::net::IpAddr;
use std::time::Duration;

/// An address is at most 45 characters; a few KiB leaves room for whitespace and headers-in-
/// body oddities while a megabyte of garbage is cut off early.
const MAX_ECHO_BYTES: usize = 4096;
/// How much of a non-address answer to quote back.
const QUOTE_CHARS: usize = 40;

/// The `ip` check.
pub async fn check(readiness: &Readiness, timeout: Duration) -> Check {
    let url = &readiness.ip_echo_url;
    let registered = readiness
        .static_ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let seen = match tokio::time::timeout(timeout, fetch(url.as_str(), timeout)).await {
        Ok(Ok(ip)) => ip,
        Ok(Err(why)) => {
            return Check::failed(
                "ip",
                format!("{why}: check readiness.ip_echo_url ({url}); registered: {registered}"),
            )
        }
        Err(_) => {
            return Check::failed(
                "ip",
                format!(
                    "the IP echo at {url} did not answer within {}: check the network or \
                     readiness.ip_echo_url; registered: {registered}",
                    humantime::format_duration(timeout)
                ),
            )
        }
    };
    if readiness.static_ips.contains(&seen) {
        Check::passed(
            "ip",
            format!("this host sends from {seen}, registered: {registered}"),
        )
    } else {
        Check::failed(
            "ip",
            format!(
                "this host sends from {seen}, registered: {registered}; orders will be refused: \
                 register {seen} on developers.kite.trade or send from a registered address"
            ),
        )
    }
}

/// The echoed address, or why there is none (one sentence, without the URL).
async fn fetch(url: &str, timeout: Duration) -> Result<IpAddr, String> {
    // The whole check is bounded by `check`'s own timeout, which names the wait; the client's
    // connect timeout only has to end a connect that can never succeed.
    let client = crate::kite::http_client::build(crate::kite::http_client::Outbound {
        connect_timeout: timeout,
        timeout: None,
        redirects: 3,
    })
    .map_err(|e| format!("cannot build an HTTP client ({e})"))?;
    let mut response = client.get(url).send().await.map_err(|e| {
        if e.is_timeout() {
            format!(
                "the IP echo did not answer within {}",
                humantime::format_duration(timeout)
            )
        } else {
            format!("cannot reach the IP echo ({})", e.without_url())
        }
    })?;
    if !response.status().is_success() {
        return Err(format!(
            "the IP echo answered HTTP {}",
            response.status().as_u16()
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the IP echo's answer broke off ({})", e.without_url()))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ECHO_BYTES {
            return Err(format!(
                "the IP echo sent more than {MAX_ECHO_BYTES} bytes, not an IP address"
            ));
        }
    }
    parse(&body)
}

/// One IP address as plain text, surrounding whitespace allowed.
fn parse(body: &[u8]) -> Result<IpAddr, String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    trimmed.parse().map_err(|_| {
        if trimmed.is_empty() {
            return "the IP echo sent an empty answer, not an IP address".to_string();
        }
        let quote: String = trimmed
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(QUOTE_CHARS)
            .collect();
        let more = if trimmed.chars().count() > QUOTE_CHARS {
            "…"
        } else {
            ""
        };
        format!("the IP echo did not answer an IP address (it sent \"{quote}{more}\")")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_address_is_an_answer() {
        assert_eq!(parse(b"203.0.113.7\n"), Ok("203.0.113.7".parse().unwrap()));
        assert_eq!(parse(b" 2001:db8::1 "), Ok("2001:db8::1".parse().unwrap()));
        let html = parse(b"<html><body>Rate limited</body></html>").unwrap_err();
        assert!(html.contains("did not answer an IP address"), "{html}");
        assert!(html.contains("<html><body>"), "{html}");
        assert!(parse(b"").unwrap_err().contains("empty"));
        assert!(parse(b"203.0.113.7 203.0.113.8").is_err());
    }
}
