//! Login tickets: the `t` of `/login?t=…`. Stateless: an expiry time, a random nonce (so each
//! link is its own, and the logins one link starts are counted apart from another's) and an
//! HMAC-SHA256 over both with a random key kept in the store, so checking one needs no table
//! and a restart keeps every link that was sent working. Replacing the key kills every link.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The length of the key: as long as SHA-256's output, as RFC 2104 suggests.
pub const KEY_LEN: usize = 32;
/// The longest a ticket may live: the next cutoff is never further away than a day.
const MAX_LIFETIME_SECS: i64 = 24 * 3600;
/// Tickets longer than this are not ours (an expiry, a nonce and 64 hex digits are ~92).
const MAX_TICKET_LEN: usize = 128;
/// Random bytes per ticket: 64 bits keep two links of one day apart.
const NONCE_LEN: usize = 8;
/// Domain separation: this key signs login tickets and nothing else.
const CONTEXT: &[u8] = b"kited login ticket v2\0";

/// Why a ticket was refused (the page says only "not valid", the log says which).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("no ticket")]
    Missing,
    #[error("malformed ticket")]
    Malformed,
    #[error("the ticket's signature does not match")]
    Forged,
    #[error("the ticket expired")]
    Expired,
}

/// The signing key. `Debug` never shows it.
#[derive(Clone)]
pub struct TicketKey([u8; KEY_LEN]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(<redacted>)")
    }
}

impl TicketKey {
    pub fn new(bytes: [u8; KEY_LEN]) -> TicketKey {
        TicketKey(bytes)
    }

    fn mac(&self, expires: i64, nonce: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(CONTEXT);
        mac.update(expires.to_string().as_bytes());
        mac.update(b"-");
        mac.update(nonce.as_bytes());
        mac
    }

    /// A ticket valid until `expires_at`: `EXPIRY-NONCE-HEX`, letters, digits and dashes
    /// (URL-safe).
    pub fn issue(&self, expires_at: DateTime<Utc>) -> String {
        let expires = expires_at.timestamp();
        let nonce = hex::encode(rand::random::<[u8; NONCE_LEN]>());
        let tag = self.mac(expires, &nonce).finalize().into_bytes();
        format!("{expires}-{nonce}-{}", hex::encode(tag))
    }

    /// Checks a ticket at `now`: our signature, not expired, and not from further ahead than a
    /// ticket can be (a day).
    pub fn check(&self, ticket: Option<&str>, now: DateTime<Utc>) -> Result<(), TicketError> {
        let ticket = ticket
            .filter(|t| !t.is_empty())
            .ok_or(TicketError::Missing)?;
        if ticket.len() > MAX_TICKET_LEN {
            return Err(TicketError::Malformed);
        }
        let (expires, tag) = ticket.split_once('-').ok_or(TicketError::Malformed)?;
        if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TicketError::Malformed);
        }
        let expires: i64 = expires.parse().map_err(|_| TicketError::Malformed)?;
        let (nonce, tag) = tag.split_once('-').ok_or(TicketError::Malformed)?;
        if nonce.len() != 2 * NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TicketError::Malformed);
        }
        let tag = hex::decode(tag).map_err(|_| TicketError::Malformed)?;
        // Constant-time comparison inside `verify_slice`.
        self.mac(expires, nonce)
            .verify_slice(&tag)
            .map_err(|_| TicketError::Forged)?;
        let now = now.timestamp();
        if now >= expires || expires - now > MAX_LIFETIME_SECS {
            return Err(TicketError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).unwrap()
    }

    #[test]
    fn issued_tickets_pass_until_they_expire() {
        let key = TicketKey::new([7; KEY_LEN]);
        let ticket = key.issue(at(12, 0));
        assert!(ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(key.check(Some(&ticket), at(3, 0)), Ok(()));
        assert_eq!(key.check(Some(&ticket), at(11, 59)), Ok(()));
        assert_eq!(
            key.check(Some(&ticket), at(12, 0)),
            Err(TicketError::Expired)
        );
        // Issued for further ahead than any cutoff: refused even though the signature holds.
        let far = key.issue(at(12, 0) + chrono::Duration::days(3));
        assert_eq!(key.check(Some(&far), at(12, 0)), Err(TicketError::Expired));
    }

    #[test]
    fn forged_and_malformed_tickets_fail() {
        let key = TicketKey::new([7; KEY_LEN]);
        let other = TicketKey::new([8; KEY_LEN]);
        let ticket = key.issue(at(12, 0));
        assert_eq!(
            other.check(Some(&ticket), at(3, 0)),
            Err(TicketError::Forged)
        );
        // A later expiry with the old signature.
        let (expires, tag) = ticket.split_once('-').unwrap();
        let stretched = format!("{}-{tag}", expires.parse::<i64>().unwrap() + 3600);
        assert_eq!(
            key.check(Some(&stretched), at(3, 0)),
            Err(TicketError::Forged)
        );
        assert_eq!(key.check(None, at(3, 0)), Err(TicketError::Missing));
        assert_eq!(key.check(Some(""), at(3, 0)), Err(TicketError::Missing));
        for bad in ["x", "12-zz", "-abcd", "+1-00", &"1".repeat(300)] {
            assert_eq!(
                key.check(Some(bad), at(3, 0)),
                Err(TicketError::Malformed),
                "{bad}"
            );
        }
        let (nonce, _) = tag.split_once('-').unwrap();
        assert_eq!(
            key.check(Some(&format!("{expires}-{nonce}-00")), at(3, 0)),
            Err(TicketError::Forged)
        );
        // Another nonce with this signature.
        let other_nonce = "0".repeat(2 * NONCE_LEN);
        let (_, signature) = tag.split_once('-').unwrap();
        assert_eq!(
            key.check(
                Some(&format!("{expires}-{other_nonce}-{signature}")),
                at(3, 0)
            ),
            Err(TicketError::Forged)
        );
    }

    #[test]
    fn each_ticket_is_its_own() {
        let key = TicketKey::new([7; KEY_LEN]);
        let (a, b) = (key.issue(at(12, 0)), key.issue(at(12, 0)));
        assert_ne!(a, b);
        assert_eq!(key.check(Some(&a), at(3, 0)), Ok(()));
        assert_eq!(key.check(Some(&b), at(3, 0)), Ok(()));
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", TicketKey::new([7; KEY_LEN])).contains('7'));
    }
}
