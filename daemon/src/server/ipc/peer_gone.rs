//! Tells a socket client that closed its end from one that only shut down its sending half.
//!
//! `nc -N`, `socat -` and scripts that `shutdown(SHUT_WR)` after their request read end-of-file
//! on the daemon's side, but still wait for the answer. Only when the client has closed the
//! socket entirely does the kernel report POLLHUP; that, not end-of-file, ends a waiting
//! `get_token`.

use interprocess::local_socket::tokio::Stream;
use rustix::event::{PollFd, PollFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

/// How often a half-closed client is checked while its `get_token` waits: often enough that a
/// client that then goes away frees its slot soon, rare enough to cost nothing.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A second handle on a client's socket, only for asking the kernel whether the client is gone.
pub struct HangupProbe(Option<OwnedFd>);

impl HangupProbe {
    pub fn of(stream: &Stream) -> HangupProbe {
        let fd = match stream {
            Stream::UdSocket(s) => s.as_fd().try_clone_to_owned().ok(),
        };
        HangupProbe(fd)
    }

    /// Resolves once the client closed the socket entirely. Without a handle (the kernel
    /// refused a dup) it resolves at once, as end-of-file did before.
    pub async fn closed(&self) {
        let Some(fd) = &self.0 else { return };
        while !hung_up(fd) {
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}

/// POLLHUP (or an error) on the socket right now.
fn hung_up(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::empty())];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
        Err(_) => true,
    }
}
