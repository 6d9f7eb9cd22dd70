//! The parts of a request the simulator's routes look at, parsed once: the method, path, query,
//! form body and the headers Kite reads.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::Method;

/// The parts of a request the routes look at.
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) content_type: Option<String>,
    pub(crate) authorization: Option<String>,
    pub(crate) body: Bytes,
}

impl ApiRequest {
    pub(crate) fn query_pairs(&self) -> HashMap<String, String> {
        first_values(self.query.as_bytes())
    }

    /// The form body, or nothing when the body is not form-encoded (Kite ignores JSON bodies).
    pub(crate) fn form(&self) -> HashMap<String, String> {
        let is_form = self.content_type.as_deref().is_some_and(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if is_form {
            first_values(&self.body)
        } else {
            HashMap::new()
        }
    }
}

fn first_values(encoded: &[u8]) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(encoded) {
        map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    map
}
