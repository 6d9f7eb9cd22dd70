//! kite-proto: what kited and its clients share — IPC messages and framing, errors and their
//! exit codes and HTTP statuses, socket path rules, events, and the Kite Connect checksums.

pub mod checksum;
pub mod error;
pub mod event;
pub mod frame;
pub mod json_keys;
pub mod message;
pub mod socket_path;
pub mod socket_trust;
pub mod status;

pub use error::{exit, ErrorKind, WireError};
pub use event::{Check, Event, EventKind, EventName};
pub use frame::{FrameError, LineBuffer, MAX_LINE};
pub use message::{answer_line, parse_answer, Answer, Call, Request};
pub use status::{SinkStatus, TokenState, TokenStatus};

/// The crate version, reported by `ping` so a client can tell which daemon answered.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
