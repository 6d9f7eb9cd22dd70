//! Which local user is on the other end of an HTTP connection, from `/proc/net/tcp{,6}`.
//!
//! TCP has no `SO_PEERCRED`, but on Linux the client's end of a loopback connection is a socket
//! of this machine, listed in `/proc/net/tcp` (or `tcp6`) with the uid that opened it: its local
//! address is our peer and its remote address is us. A peer that is not on loopback, or that
//! cannot be found there, is nobody we trust.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;

/// The kernel's TCP socket tables.
const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// One HTTP connection's two ends; whether the peer runs as kited's own uid is looked up once,
/// and only when a route asks.
pub struct Caller {
    local: SocketAddr,
    peer: SocketAddr,
    own_user: OnceLock<bool>,
}

impl Caller {
    pub fn new(local: SocketAddr, peer: SocketAddr) -> Caller {
        Caller {
            local,
            peer,
            own_user: OnceLock::new(),
        }
    }

    /// A caller on the public Unix socket: nobody kited trusts (the proxy, for a stranger).
    pub fn stranger() -> Caller {
        let nowhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let caller = Caller::new(nowhere, nowhere);
        let _ = caller.own_user.set(false);
        caller
    }

    /// A caller whose user is already known, for tests of the routes without a connection.
    #[cfg(test)]
    pub fn known(own_user: bool) -> Caller {
        let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let caller = Caller::new(loopback(8079), loopback(40000));
        let _ = caller.own_user.set(own_user);
        caller
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the connection comes from this machine's loopback.
    pub fn peer_is_loopback(&self) -> bool {
        crate::config::public_listen::is_loopback(self.peer.ip())
    }

    /// Looks the peer's uid up once, on a blocking thread: `/proc/net/tcp` is a file read that
    /// must not stall the runtime thread. The routes that need the answer call this first (only
    /// they pay for the lookup); [`Caller::is_own_user`] then only reads it.
    pub async fn resolve_owner(&self) {
        if self.own_user.get().is_some() {
            return;
        }
        let (local, peer) = (self.local, self.peer);
        let me = rustix::process::geteuid().as_raw();
        let own = tokio::task::spawn_blocking(move || peer_uid(local, peer) == Some(me))
            .await
            .unwrap_or(false);
        let _ = self.own_user.set(own);
    }

    /// True when the peer is a loopback connection opened by the uid kited runs as.
    pub fn is_own_user(&self) -> bool {
        *self.own_user.get_or_init(|| {
            let me = rustix::process::geteuid().as_raw();
            peer_uid(self.local, self.peer) == Some(me)
        })
    }
}

/// The uid owning the client end of the loopback connection `peer` → `local`.
pub fn peer_uid(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    if !canonical(peer.ip()).is_loopback() {
        return None;
    }
    TABLES.iter().find_map(|table| {
        let text = std::fs::read_to_string(table).ok()?;
        find_owner(&text, local, peer)
    })
}

/// Finds the socket whose local address is `peer` and remote address is `local` in one table.
fn find_owner(table: &str, local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    let (local, peer) = (canonical_addr(local), canonical_addr(peer));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
        let (its_local, its_remote, uid) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        (parse_addr(its_local)? == peer && parse_addr(its_remote)? == local)
            .then(|| uid.parse().ok())
            .flatten()
    })
}

/// `0100007F:1F9F` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit word is printed in
/// the machine's byte order, the port in host order.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(canonical_addr(SocketAddr::new(ip, port)))
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical(addr.ip()), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F9F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:D431 0100007F:1F9F 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1\n";
        let local: SocketAddr = "127.0.0.1:8095".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(find_owner(v4, local, peer), Some(1000));
        assert_eq!(find_owner(v4, local, "127.0.0.1:1".parse().unwrap()), None);
        let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:1F9F 01 00000000:00000000 00:00000000 00000000    42        0 3 1 0000000000000000 20 4 30 10 -1\n\
   1: 0000000000000000FFFF00000100007F:D432 0000000000000000FFFF00000100007F:1F9F 01 00000000:00000000 00:00000000 00000000    43        0 4 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(
            find_owner(
                v6,
                "[::1]:8095".parse().unwrap(),
                "[::1]:54321".parse().unwrap()
            ),
            Some(42)
        );
        // A v4-mapped peer matches its IPv4 form.
        assert_eq!(
            find_owner(v6, local, "127.0.0.1:54322".parse().unwrap()),
            Some(43)
        );
    }

    #[test]
    fn remote_peers_are_nobody() {
        let local: SocketAddr = "0.0.0.0:8079".parse().unwrap();
        assert_eq!(peer_uid(local, "192.0.2.7:40000".parse().unwrap()), None);
    }

    #[test]
    fn finds_a_real_loopback_connection_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(peer_uid(server.local_addr().unwrap(), peer), Some(me));
        drop(client);
    }
}
