//! kite-tests: a faithful loopback Kite Connect simulator, and the harness that runs the real
//! `kited` and `kitectl` binaries against it in end-to-end tests.

pub mod caddy;
pub mod harness;
pub mod http_client;
pub mod sim;
pub mod terminal;
pub mod user_manager;
pub mod webdriver;

pub use harness::{bin, follow_browser_login, Daemon, DaemonBuilder};
pub use sim::{Call, Fault, Sim, SimConfig};
