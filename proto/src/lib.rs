//! kite-proto: what kited and its clients share — IPC messages and framing, socket path rules,
//! events, and the Kite Connect checksums.

pub mod checksum;
pub mod event;
pub mod frame;
pub mod message;
pub mod socket_path;
pub mod socket_trust;

pub use event::{Event, EventKind};
pub use frame::{FrameError, LineBuffer, MAX_LINE};
pub use message::{ErrorKind, Request, Response, TokenState, TokenStatus, WireError};

/// The crate version, reported by `ping` so a client can tell which daemon answered.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
