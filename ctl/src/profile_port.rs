//! Which HTTP port `kitectl setup` gives a profile: the default profile kited's default port,
//! every other profile one of its own, so two profiles never fight over one.

use crate::exit::Failure;
use std::fs;
use std::path::Path;

/// The default profile's port (kited's default listen address is 127.0.0.1:8079).
pub const DEFAULT_PORT: u16 = 8079;

/// Other profiles get 8179, 8279, ...: one port each, so two profiles never fight over one and
/// each has its own redirect URL; the step of 100 keeps the numbers easy to tell apart.
const PROFILE_PORT_STEP: u16 = 100;

/// More profiles than this on one machine is a mistake worth stopping at.
const MAX_PROFILES: u16 = 9;

/// The port for a profile other than the default: the first of 8179, 8279, ... that no other
/// profile's config file in the same directory already listens on.
pub fn profile_port(dir: &Path, profile: &str) -> Result<u16, Failure> {
    let mut taken = vec![DEFAULT_PORT];
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let is_other_profile = path.extension().is_some_and(|e| e == "toml")
                && path.file_stem().is_some_and(|stem| stem != profile);
            if is_other_profile {
                if let Ok(text) = fs::read_to_string(&path) {
                    taken.extend(listen_port(&text));
                }
            }
        }
    }
    (1..=MAX_PROFILES)
        .map(|n| DEFAULT_PORT + n * PROFILE_PORT_STEP)
        .find(|port| !taken.contains(port))
        .ok_or_else(|| {
            Failure::Local(format!(
                "every profile port from {} to {} is taken by another profile's http.listen",
                DEFAULT_PORT + PROFILE_PORT_STEP,
                DEFAULT_PORT + MAX_PROFILES * PROFILE_PORT_STEP
            ))
        })
}

/// The port of a config file's `http.listen`, if it sets one. kitectl reads no config files
/// otherwise, so this is a line scan for `listen = "HOST:PORT"` in the `[http]` table (the form
/// setup writes and the README shows), not a TOML parser.
fn listen_port(config: &str) -> Option<u16> {
    let mut in_http = false;
    for line in config.lines().map(str::trim) {
        if line.starts_with('[') {
            in_http = line == "[http]";
        } else if let Some((key, value)) = line.split_once('=') {
            if in_http && key.trim() == "listen" {
                let value = value.split('#').next()?.trim().trim_matches('"');
                return value.rsplit_once(':')?.1.parse().ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_profiles_get_a_port_of_their_own() {
        let dir = std::env::temp_dir().join(format!("kitectl-setup-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("default.toml"), "[kite]\napi_key = \"abcdef\"\n").unwrap();
        assert_eq!(profile_port(&dir, "prod").unwrap(), 8179);
        fs::write(
            dir.join("prod.toml"),
            "[kite]\napi_key = \"abcdef\"\n\n[http]\nlisten = \"127.0.0.1:8179\"\n",
        )
        .unwrap();
        assert_eq!(profile_port(&dir, "dev").unwrap(), 8279);
        // Re-running setup for prod keeps its own port free for it.
        assert_eq!(profile_port(&dir, "prod").unwrap(), 8179);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            listen_port("[http]\nlisten = \"127.0.0.1:9000\" # x\n"),
            Some(9000)
        );
        assert_eq!(listen_port("[kite]\nlisten = \"127.0.0.1:9000\"\n"), None);
    }
}
