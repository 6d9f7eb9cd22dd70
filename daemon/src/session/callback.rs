//! What a login hands back: the parameters of Kite's browser redirect (or of a pasted URL), and
//! the shape a request token must have before it goes anywhere near Kite or a page.

/// Kite's request tokens are 32 alphanumerics; anything much longer or stranger is not one.
const MAX_REQUEST_TOKEN_LEN: usize = 128;

/// The parts of a callback URL kited reads.
#[derive(Debug, Default, PartialEq)]
pub struct CallbackParams {
    pub status: Option<String>,
    pub request_token: Option<String>,
    pub state: Option<String>,
}

impl CallbackParams {
    /// Reads a query string (`a=b&c=d`), a full URL, or a URL with a fragment.
    pub fn parse(text: &str) -> CallbackParams {
        let text = text.trim();
        let query = match text.split_once('?') {
            Some((_, query)) => query,
            None => text,
        };
        let query = query.split('#').next().unwrap_or("");
        let mut params = CallbackParams::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "status" => &mut params.status,
                "request_token" => &mut params.request_token,
                "state" => &mut params.state,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        params
    }
}

/// Rejects what cannot be a request token; the error says why, for a person.
pub fn check_request_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("request_token is empty".into());
    }
    if token.len() > MAX_REQUEST_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("request_token must be letters and digits only (as Kite issues them)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_params_from_url_query_and_fragment() {
        let p = CallbackParams::parse(
            "http://127.0.0.1:8079/auth/callback?action=login&type=login&status=success&request_token=abc123&state=s1#x",
        );
        assert_eq!(p.status.as_deref(), Some("success"));
        assert_eq!(p.request_token.as_deref(), Some("abc123"));
        assert_eq!(p.state.as_deref(), Some("s1"));
        let q = CallbackParams::parse("status=cancelled");
        assert_eq!(q.status.as_deref(), Some("cancelled"));
        assert_eq!(q.request_token, None);
    }

    #[test]
    fn request_token_shape() {
        assert!(check_request_token("qQDXpFOTSBW59mcej7cmRmM0xtBWA1Iw").is_ok());
        for bad in ["", "a b", "<script>", "x&y=z", &"a".repeat(200)] {
            assert!(check_request_token(bad).is_err(), "{bad}");
        }
    }
}
