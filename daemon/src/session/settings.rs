//! The configuration in force and what is built from it (the Kite client, the callback URL),
//! held as one value so that a reload swaps all of it at once.

use crate::config::Config;
use crate::kite::KiteClient;
use std::net::SocketAddr;
use std::sync::Arc;

/// One consistent view: never a new config with an old client or an old callback URL.
pub struct Settings {
    pub config: Arc<Config>,
    /// `None` while the api key or secret is missing.
    pub kite: Option<KiteClient>,
    /// What login URLs redirect to and `check-config` tells people to register.
    pub callback_url: String,
    /// The address the HTTP server really bound; it does not change on reload.
    pub http_addr: SocketAddr,
}

impl Settings {
    pub fn new(config: Config, http_addr: SocketAddr) -> Settings {
        let kite = match (&config.api_key, &config.api_secret) {
            (Some(key), Some(secret)) => Some(KiteClient::new(
                &config.api_root,
                key,
                secret.clone(),
                config.kite_timeout,
            )),
            _ => None,
        };
        Settings {
            callback_url: config.callback_url(http_addr.port()),
            kite,
            config: Arc::new(config),
            http_addr,
        }
    }

    /// The settings after a reload to `config`; the listeners stay where they are.
    pub fn reloaded(&self, config: Config) -> Settings {
        Settings::new(config, self.http_addr)
    }
}
