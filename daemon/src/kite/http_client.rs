//! The one way kited builds an HTTP client for its calls out (Kite, the push channels, the IP
//! echo), so the policy is written once: rustls, kited's user agent, no idle connections, and
//! answers read as sent.

use std::time::Duration;

/// What differs between kited's outbound clients.
pub struct Outbound {
    /// How long a connect may take.
    pub connect_timeout: Duration,
    /// How long a whole call may take; `None` when the caller bounds it itself.
    pub timeout: Option<Duration>,
    /// How many redirects to follow (0: an answer is taken as it is).
    pub redirects: usize,
}

/// Builds a client for `outbound`. Common to all:
/// - no idle connection is kept: kited calls out a few times a day, and a pooled connection
///   would only wake the idle daemon 90 s later to close it;
/// - no automatic decompression: answers come from outside, and a compressed one could inflate
///   far beyond the bytes kited agreed to read.
pub fn build(outbound: Outbound) -> Result<reqwest::Client, reqwest::Error> {
    let redirect = match outbound.redirects {
        0 => reqwest::redirect::Policy::none(),
        n => reqwest::redirect::Policy::limited(n),
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(outbound.connect_timeout)
        .user_agent(concat!("kited/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect)
        .no_gzip()
        .pool_max_idle_per_host(0);
    if let Some(timeout) = outbound.timeout {
        builder = builder.timeout(timeout);
    }
    builder.build()
}
