//! kite-sim: a loopback Kite Connect API that behaves as Kite's public API documentation says
//! Kite does: the browser login, the checksummed single-use request-token exchange, profile,
//! logout and renewal, the error envelope with `Content-Type: application/json`, plus fault
//! injection and a call log.
//!
//! The server runs on its own tokio runtime in a background thread, so plain synchronous
//! `#[test]` functions can drive it; every method here is synchronous. `Sim` is a cheap handle:
//! clones share one server, which stops (and its thread is joined) when the last clone drops.
//!
//! Control routes under `/_sim/` let other processes (and the `kite-sim` binary's users) do what
//! the methods do; they are neither logged as calls nor subject to faults.

mod control;
mod faults;
mod reply;
mod request;
mod routes;
mod server;
mod sim;
mod state;

use std::time::Duration;

pub use faults::Fault;
pub use sim::Sim;
pub use state::Call;

/// The api key a default [`SimConfig`] accepts (16 lowercase alphanumerics, like Kite's).
pub const DEFAULT_API_KEY: &str = "kitedtestkey0001";
/// The api secret a default [`SimConfig`] checks checksums with.
pub const DEFAULT_API_SECRET: &str = "simsecret-0123456789abcdef";

/// Who the simulated Kite app and user are.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub api_key: String,
    pub api_secret: String,
    pub user_id: String,
    pub user_name: String,
    /// The redirect URL registered on the "developer console"; logins fail 400 without one.
    pub redirect_url: Option<String>,
    /// How long an issued request token may still be exchanged.
    pub request_token_ttl: Duration,
    /// Print one line per request to stderr (the `kite-sim` binary turns this on).
    pub log_calls: bool,
    /// Seconds added to the machine's clock in every answer's `Date` header (negative: behind).
    pub date_offset_secs: i64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: DEFAULT_API_KEY.into(),
            api_secret: DEFAULT_API_SECRET.into(),
            user_id: "AB1234".into(),
            user_name: "Kite Tester".into(),
            redirect_url: None,
            request_token_ttl: Duration::from_secs(5 * 60),
            log_calls: false,
            date_offset_secs: 0,
        }
    }
}
