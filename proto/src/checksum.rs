//! The SHA-256 checksums Kite Connect uses to prove the api secret without sending it.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of the concatenation of `parts` (no separators), as Kite defines it.
fn sha256_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Checksum for `POST /session/token`: sha256(api_key + request_token + api_secret).
pub fn session_checksum(api_key: &str, request_token: &str, api_secret: &str) -> String {
    sha256_hex(&[api_key, request_token, api_secret])
}

/// Checksum for `POST /session/refresh_token`: sha256(api_key + refresh_token + api_secret).
pub fn refresh_checksum(api_key: &str, refresh_token: &str, api_secret: &str) -> String {
    sha256_hex(&[api_key, refresh_token, api_secret])
}

/// Checksum of an order postback: sha256(order_id + order_timestamp + api_secret).
pub fn postback_checksum(order_id: &str, order_timestamp: &str, api_secret: &str) -> String {
    sha256_hex(&[order_id, order_timestamp, api_secret])
}

/// Compares two checksums in time independent of where they first differ.
pub fn checksums_match(expected: &str, given: &str) -> bool {
    let (a, b) = (
        expected.as_bytes(),
        given.trim().to_ascii_lowercase().into_bytes(),
    );
    if a.len() != b.len() {
        return false;
    }
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_api_md_test_vector() {
        assert_eq!(
            session_checksum("key", "request", "secret"),
            "e4465f58be6159d2a7f087f4292515e9d631b4f91e056b53e6f14456222ff709"
        );
    }

    #[test]
    fn refresh_uses_the_same_construction() {
        assert_eq!(
            refresh_checksum("key", "request", "secret"),
            session_checksum("key", "request", "secret")
        );
    }

    #[test]
    fn checksum_comparison() {
        let sum = postback_checksum("1", "2", "3");
        assert!(checksums_match(&sum, &sum.to_uppercase()));
        assert!(!checksums_match(&sum, &sum[1..]));
        assert!(!checksums_match(&sum, &postback_checksum("1", "2", "4")));
    }
}
