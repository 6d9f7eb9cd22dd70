//! Walking the simulator's login page by hand: where it redirects a login URL, and the path and query a URL asks for.

use kite_tests::http_client;

/// GETs the sim's login page like a browser and returns the redirect `Location` (kited's
/// callback URL with the request token), without following it.
pub fn sim_redirect(login_url: &str) -> String {
    let reply = http_client::get(login_url).expect("GET login URL");
    assert_eq!(reply.status, 302, "sim login: {}", reply.text());
    reply
        .header("location")
        .expect("sim redirect has a Location")
        .to_string()
}

/// The path and query of an absolute URL (what to GET on the daemon).
pub fn path_and_query(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}
