//! Blots a channel's credentials out of text a push endpoint sent back, in every encoding an
//! echo is likely to use: as is, percent-encoded, JSON `\u` escapes, hex and base64 (at any of
//! the three byte alignments inside a longer base64 text). Anything shown from an answer (the
//! log, `kitectl push-test`) goes through here first.

/// What stands in for a credential.
pub const REDACTED: &str = "<redacted>";
/// What replaces an answer that still carries a credential after the known encodings are
/// blotted out (mixed encodings): the whole text is withheld.
pub const WITHHELD: &str = "<withheld: the answer echoed a credential>";
/// The secret half of a Telegram bot token (`ID:SECRET`) is redacted on its own too; shorter
/// tails are not secrets worth a pattern (and would blot innocent text).
const MIN_TAIL: usize = 16;
/// Base64 patterns shorter than this would match by chance; every real token is far longer.
const MIN_BASE64: usize = 12;

/// The patterns for one set of credentials.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    /// The credentials as they are, for the last check.
    plain: Vec<String>,
    /// Every encoded form, matched without regard to ASCII case (over-redacting is harmless).
    patterns: Vec<String>,
}

impl Redaction {
    pub fn new(secrets: &[&str]) -> Redaction {
        let mut plain: Vec<String> = Vec::new();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            plain.push(secret.to_string());
            if let Some((_, tail)) = secret.rsplit_once(':') {
                if tail.len() >= MIN_TAIL {
                    plain.push(tail.to_string());
                }
            }
        }
        let mut patterns = Vec::new();
        for secret in &plain {
            let bytes = secret.as_bytes();
            patterns.push(secret.clone());
            patterns.push(percent_reserved(bytes));
            patterns.push(bytes.iter().map(|b| format!("%{b:02x}")).collect());
            patterns.push(bytes.iter().map(|b| format!("\\u{:04x}", b)).collect());
            patterns.push(hex::encode(bytes));
            for alphabet in [STANDARD, URL_SAFE] {
                for offset in 0..3 {
                    let middle = base64_middle(bytes, offset, alphabet);
                    if middle.len() >= MIN_BASE64 {
                        patterns.push(middle);
                    }
                }
            }
        }
        // Longest first, so a long encoding is blotted before a shorter one eats part of it.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        patterns.dedup();
        Redaction { plain, patterns }
    }

    /// `text` with every encoding of every credential replaced by [`REDACTED`], or [`WITHHELD`]
    /// when a credential still shows once percent-escapes are decoded.
    pub fn apply(&self, text: &str) -> String {
        let text = self
            .patterns
            .iter()
            .fold(text.to_string(), |text, pattern| {
                replace_ignoring_case(&text, pattern)
            });
        let decoded = percent_decode(&text).to_ascii_lowercase();
        if self
            .plain
            .iter()
            .any(|secret| decoded.contains(&secret.to_ascii_lowercase()))
        {
            return WITHHELD.to_string();
        }
        text
    }
}

/// `text` with each ASCII-case-insensitive occurrence of `pattern` replaced by [`REDACTED`].
fn replace_ignoring_case(text: &str, pattern: &str) -> String {
    if pattern.is_empty() {
        return text.to_string();
    }
    // ASCII lowercasing keeps every byte where it was, so positions carry over.
    let lower = text.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(found) = lower[from..].find(&pattern) {
        let at = from + found;
        out.push_str(&text[from..at]);
        out.push_str(REDACTED);
        from = at + pattern.len();
    }
    out.push_str(&text[from..]);
    out
}

/// Percent-encoding of everything but RFC 3986's unreserved characters.
fn percent_reserved(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `%XX` escapes decoded (lossily); anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = (bytes.get(i + 1).copied().and_then(hex_digit))
            .zip(bytes.get(i + 2).copied().and_then(hex_digit));
        if let (b'%', Some((high, low))) = (bytes[i], digits) {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The base64 characters that depend only on `bytes` when they start `offset` bytes into a
/// longer text: the same whatever surrounds them.
fn base64_middle(bytes: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let mut padded = vec![0u8; offset];
    padded.extend_from_slice(bytes);
    let encoded = base64(&padded, alphabet);
    let first = (8 * offset).div_ceil(6);
    let end = (8 * (offset + bytes.len())) / 6;
    encoded.get(first..end).unwrap_or_default().to_string()
}

/// Base64 without padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc";

    fn std_base64(text: &str) -> String {
        base64(text.as_bytes(), STANDARD)
    }

    #[test]
    fn base64_matches_the_reference() {
        assert_eq!(std_base64("Man"), "TWFu");
        assert_eq!(std_base64("Ma"), "TWE");
        assert_eq!(std_base64("M"), "TQ");
        assert_eq!(std_base64("any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw");
    }

    #[test]
    fn every_encoding_of_the_token_is_blotted_out() {
        let redaction = Redaction::new(&[TOKEN]);
        let percent = url::form_urlencoded::byte_serialize(TOKEN.as_bytes()).collect::<String>();
        let json = serde_json::to_string(&format!("bad token {TOKEN}")).unwrap();
        let escaped: String = TOKEN
            .chars()
            .map(|c| format!("\\u{:04X}", c as u32))
            .collect();
        let echoes = [
            format!("Unauthorized: bot{TOKEN} is unknown"),
            format!("see https://x/bot{percent}/sendMessage"),
            format!("see https://x/bot{}/sendMessage", percent.to_lowercase()),
            json,
            format!("{{\"token\":\"{escaped}\"}}"),
            format!("hex {}", hex::encode(TOKEN)),
            format!("auth {}", std_base64(&format!("bot:{TOKEN}"))),
            format!("auth {}", std_base64(&format!("b:{TOKEN}!"))),
            format!("auth {}", std_base64(&format!("{TOKEN}xy"))),
            format!("auth {}", base64(format!("zz{TOKEN}").as_bytes(), URL_SAFE)),
            // Only the secret half, base64 at an odd alignment.
            std_base64(&format!("k={}", &TOKEN[11..])),
            // Mixed encodings: caught by the last check.
            "bot4839574812%3AAAFD39kkdpWt3ywyRZergyOLMaJhac60q%63".to_string(),
        ];
        let secret = &TOKEN[11..];
        for echo in &echoes {
            let shown = redaction.apply(echo);
            assert!(
                !shown.contains(secret) && !shown.contains(&secret[..20]),
                "{echo} -> {shown}"
            );
            for offset in 0..3 {
                for alphabet in [STANDARD, URL_SAFE] {
                    let middle = base64_middle(secret.as_bytes(), offset, alphabet);
                    assert!(!shown.contains(&middle), "{echo} -> {shown}");
                }
            }
            assert!(
                shown.contains(REDACTED) || shown == WITHHELD,
                "{echo} -> {shown}"
            );
        }
        assert_eq!(
            redaction.apply("Too Many Requests: retry after 3"),
            "Too Many Requests: retry after 3"
        );
    }

    #[test]
    fn short_and_empty_secrets() {
        assert_eq!(
            Redaction::new(&["123:abc", ""]).apply("error for https://api/bot123:abc/sendMessage"),
            "error for https://api/bot<redacted>/sendMessage"
        );
        assert_eq!(Redaction::new(&[]).apply("plain"), "plain");
    }
}
