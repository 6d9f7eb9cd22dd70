//! kite-tests: the harness that runs the real `kited` and `kitectl` binaries against the Kite
//! simulator ([`sim`], the `kite-sim` crate) in end-to-end tests, and the `kite-sim`
//! binary.

pub mod caddy;
pub mod daemon_builder;
pub mod harness;
pub mod hostile_http;
pub mod http_client;
pub mod nginx;
pub mod ntfy_sim;
mod poll;
mod ports;
mod proxy_process;
pub mod push_sim;
pub mod recipe;
pub mod redis_server;
pub mod telegram_sim;
pub mod terminal;
pub mod user_manager;
pub mod webdriver;

/// The simulator lives in its own crate; `kite_tests::sim` keeps naming it.
pub use kite_sim as sim;

pub use harness::{bin, follow_browser_login, Daemon, DaemonBuilder};
pub use sim::{Call, Fault, Sim, SimConfig};
