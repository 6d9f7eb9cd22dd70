//! A wall-clock alarm: sleeps until an absolute wall time with no periodic wakeups, and notices
//! when the clock is set (suspend/resume, NTP steps) so the schedule can be planned again.
//!
//! Built on a `CLOCK_REALTIME` timerfd with `TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET`: a
//! monotonic sleep would stop counting while a laptop is suspended and fire late.

use chrono::{DateTime, Utc};
use rustix::fd::OwnedFd;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::unix::AsyncFd;

/// Why an alarm returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// The wall clock reached the requested time.
    Due,
    /// The wall clock was set (jumped); times must be recomputed.
    ClockChanged,
}

pub struct WallAlarm {
    fd: AsyncFd<OwnedFd>,
}

impl WallAlarm {
    pub fn new() -> std::io::Result<WallAlarm> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Realtime,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // SAFETY: `OwnedFd` owns the timerfd and always reports that same descriptor; it stays
        // open until the AsyncFd (which owns it) is dropped.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        Ok(WallAlarm { fd })
    }

    /// Sleeps until the wall clock reads `at` (returns at once if it already has).
    pub async fn sleep_until(&self, at: DateTime<Utc>) -> std::io::Result<Wake> {
        let nanos = at.timestamp_subsec_nanos().min(999_999_999);
        let value = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                // A zero it_value disarms the timer; the epoch itself is never a real target.
                tv_sec: at.timestamp().max(1),
                tv_nsec: nanos.into(),
            },
        };
        rustix::time::timerfd_settime(
            self.fd.get_ref(),
            TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
            &value,
        )?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations) {
                Ok(_) => return Ok(Wake::Due),
                Err(rustix::io::Errno::CANCELED) => return Ok(Wake::ClockChanged),
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_at_the_wall_time() {
        let alarm = WallAlarm::new().unwrap();
        let start = std::time::Instant::now();
        let target = Utc::now() + chrono::Duration::milliseconds(150);
        assert_eq!(alarm.sleep_until(target).await.unwrap(), Wake::Due);
        assert!(Utc::now() >= target);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[tokio::test]
    async fn past_times_are_due_at_once() {
        let alarm = WallAlarm::new().unwrap();
        let past = Utc::now() - chrono::Duration::hours(1);
        let woke =
            tokio::time::timeout(std::time::Duration::from_secs(2), alarm.sleep_until(past)).await;
        assert_eq!(woke.unwrap().unwrap(), Wake::Due);
    }
}
