//! The phone side of push: a Kite simulator with the Telegram and ntfy simulators, and a kited
//! configured to push to both.

use std::time::Duration;

use kite_tests::ntfy_sim::{self, NtfySim};
use kite_tests::telegram_sim::TelegramSim;
use kite_tests::{Daemon, DaemonBuilder, Sim};

/// How long a push may take to arrive when nothing is wrong (the machine may be busy).
pub const ARRIVAL: Duration = Duration::from_secs(15);

pub struct Phone {
    pub sim: Sim,
    pub telegram: TelegramSim,
    pub ntfy: NtfySim,
}

impl Phone {
    pub fn new() -> Phone {
        Phone {
            sim: super::sim(),
            telegram: TelegramSim::start(),
            ntfy: NtfySim::start(Some(ntfy_sim::DEFAULT_TOKEN)),
        }
    }

    /// `[push.*]` tables for both simulators; the tokens come from the environment.
    pub fn push_toml(&self) -> String {
        format!(
            "[push.telegram]\nchat_id = \"{}\"\napi_root = \"{}\"\n\n[push.ntfy]\nurl = \"{}\"\n",
            self.telegram.chat_id(),
            self.telegram.api_root(),
            self.ntfy.topic_url()
        )
    }

    /// A daemon with both channels, `http_extra` in `[http]` (e.g. the public URL).
    pub fn daemon(&self, http_extra: &str) -> DaemonBuilder {
        Daemon::builder(&self.sim)
            .config_toml(&format!(
                "[http]\n{http_extra}\n\n[expiry]\nwarn_before = [\"1m\"]\n\n[notify]\ndesktop = false\n\n{}",
                self.push_toml()
            ))
            .env("KITED_TELEGRAM_BOT_TOKEN", self.telegram.token())
            .env("KITED_NTFY_TOKEN", ntfy_sim::DEFAULT_TOKEN)
    }
}
