//! Ports for the servers a test starts and must name before they run (kited's listen address, a
//! proxy's HTTPS port). They come from just below the kernel's ephemeral range: the kernel never
//! hands those out by itself (not to `bind(:0)`, not to an outgoing connection), so between the
//! check here and the server's own bind no other test's socket can take the port. Each port is
//! handed out once per process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// How many ports below the ephemeral range are used: far more than one test run asks for.
const SPAN: u32 = 10_000;
/// Linux's default ephemeral range starts here, for a kernel that does not say.
const DEFAULT_EPHEMERAL_START: u32 = 32_768;
/// The lowest port ever handed out: above the well-known ports and the common services.
const LOWEST: u32 = 10_000;

/// Calls so far; the next candidate is `start + count`.
static HANDED_OUT: AtomicU32 = AtomicU32::new(0);

/// The first port of the kernel's ephemeral range, read once.
fn ephemeral_start() -> u32 {
    static START: OnceLock<u32> = OnceLock::new();
    *START.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok())
            .unwrap_or(DEFAULT_EPHEMERAL_START)
    })
}

/// A port on 127.0.0.1 that is free now and that nothing else is handed.
pub fn free_port() -> u16 {
    let top = ephemeral_start().max(LOWEST + SPAN);
    let bottom = top - SPAN;
    // Test binaries running side by side begin at different places.
    let offset = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        let candidate = bottom + (offset + n) % SPAN;
        let Ok(port) = u16::try_from(candidate) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {bottom} and {top}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_distinct_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        let start = ephemeral_start();
        for port in ports {
            assert!(u32::from(port) < start.max(LOWEST + SPAN), "{port}");
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok(), "{port}");
        }
    }
}
