//! How many connections kited serves at once, from how many file descriptors it may open.
//!
//! Every connection costs a descriptor, and so does each call to Kite, the store and a
//! notification. kited raises its soft `RLIMIT_NOFILE` to the hard limit at start (the soft
//! default of 1024 is a relic; systemd's hard default is 512 Ki) and caps the socket and HTTP
//! connections well below it, so a crowd of idle clients is turned away at accept instead of
//! leaving nothing for an exchange or `/healthz`.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept back from the connection caps: sled, the listeners, Kite calls,
/// notifications, the env file, with room to spare.
const RESERVE: u64 = 128;
/// The most connections either server takes at once, however high the limit: far beyond real
/// use (trading programs open one each), and a bound on memory.
const MAX_PER_SERVER: u64 = 4096;

/// The connection caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub socket: usize,
    pub http: usize,
}

/// Raises the soft descriptor limit to the hard one and returns the caps, which the lifecycle
/// hands to each server (a value passed in, not a global).
pub fn init() -> Budget {
    let limit = getrlimit(Resource::Nofile);
    let raised = match limit.maximum {
        Some(hard) if limit.current.is_some_and(|soft| soft < hard) => {
            let wanted = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => Some(hard),
                Err(e) => {
                    tracing::warn!("cannot raise the open-files limit to {hard}: {e}");
                    limit.current
                }
            }
        }
        _ => limit.current,
    };
    let budget = caps(raised.unwrap_or(u64::MAX));
    tracing::debug!(?budget, "connection caps");
    budget
}

/// Half of what is left after the reserve for each server, at most [`MAX_PER_SERVER`].
fn caps(limit: u64) -> Budget {
    let each = (limit.saturating_sub(RESERVE) / 2).clamp(1, MAX_PER_SERVER) as usize;
    Budget {
        socket: each,
        http: each,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_the_reserve_free() {
        assert_eq!(
            caps(1024),
            Budget {
                socket: 448,
                http: 448
            }
        );
        assert_eq!(
            caps(u64::MAX),
            Budget {
                socket: 4096,
                http: 4096
            }
        );
        assert_eq!(caps(100), Budget { socket: 1, http: 1 });
        let b = caps(1024);
        assert!((b.socket + b.http) as u64 + RESERVE <= 1024);
    }
}
