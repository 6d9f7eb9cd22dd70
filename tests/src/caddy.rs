//! A real Caddy in front of a real kited: TLS with Caddy's own internal CA (`tls internal`) on
//! an ephemeral port, reverse-proxying to kited's loopback port, exactly as the operations
//! guide sets it up on a server. The public name [`PUBLIC_HOST`] resolves to 127.0.0.1 only
//! inside the clients (`http_client::request_to`, Chromium's host resolver rules): no DNS, no
//! /etc/hosts. Dropping a `Caddy` kills it and removes its certificates and state.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::free_port;
use crate::http_client::HttpReply;
use crate::proxy_process::ProxyProcess;
pub use crate::proxy_process::{public_url, PUBLIC_HOST, REQUEST_TIMEOUT, START_DEADLINE};

/// The Caddy binary: `$KITED_CADDY` or Debian's `/usr/bin/caddy`.
pub fn caddy_bin() -> PathBuf {
    std::env::var_os("KITED_CADDY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/caddy"))
}

/// The HTTPS port for a Caddy that does not run yet: kited must know its public URL first.
pub fn reserve_port() -> u16 {
    free_port()
}

/// A running Caddy process.
pub struct Caddy {
    proxy: ProxyProcess,
    // Last: the process is gone before its directory is removed.
    dir: tempfile::TempDir,
}

impl Caddy {
    /// Starts Caddy on `port` (HTTPS) proxying to `upstream`, and waits until
    /// `GET https://kited.test:PORT/healthz` reaches kited through it.
    pub fn start(port: u16, upstream: SocketAddr) -> Caddy {
        Caddy::start_site(
            port,
            &format!("{PUBLIC_HOST}:{port} {{\n\ttls internal\n\treverse_proxy {upstream}\n}}\n"),
        )
    }

    /// Starts Caddy on `port` (HTTPS) with `site` (site blocks, e.g. the operations guide's
    /// recipe) after the test's global options, which make every site use Caddy's internal CA,
    /// and waits until `GET https://kited.test:PORT/healthz` reaches kited through it.
    pub fn start_site(port: u16, site: &str) -> Caddy {
        let bin = caddy_bin();
        assert!(
            bin.is_file(),
            "the remote-login tests need Caddy at {}: install it with `apt-get install -y caddy` \
             (or set KITED_CADDY)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("kited-caddy-")
            .tempdir()
            .expect("cannot create a temp dir for Caddy");
        let caddyfile = dir.path().join("Caddyfile");
        // The site, plus what a test needs: no admin endpoint, no trust-store changes, no port
        // 80, certificates from Caddy's internal CA, every file in the temp dir.
        let text = format!(
            "{{\n\tadmin off\n\tlocal_certs\n\tskip_install_trust\n\tauto_https disable_redirects\n\
             \thttp_port {http}\n\thttps_port {port}\n\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n\n\
             {site}",
            http = free_port(),
            storage = dir.path().join("data").display(),
        );
        fs::write(&caddyfile, text).expect("cannot write the Caddyfile");
        let log_path = dir.path().join("caddy.log");
        let log = File::create(&log_path).expect("cannot create the Caddy log");
        let err = log.try_clone().expect("cannot dup the Caddy log");
        let home = dir.path().join("home");
        fs::create_dir_all(&home).expect("cannot create Caddy's HOME");
        let mut command = Command::new(&bin);
        command
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut proxy = ProxyProcess::new("caddy", child, port, log_path);
        // Any answer from kited will do: every status but the 502 Caddy gives while kited is
        // unreachable (a proxy set up to be refused gets 421).
        proxy.wait_ready(|status| status != 502);
        Caddy { proxy, dir }
    }

    /// `https://kited.test:PORT`.
    pub fn public_url(&self) -> String {
        self.proxy.public_url()
    }

    pub fn port(&self) -> u16 {
        self.proxy.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Caddy's own log.
    pub fn log(&self) -> String {
        self.proxy.log()
    }

    /// A request through the proxy over HTTPS (`path` may carry a query); redirects are not
    /// followed. Panics with Caddy's log when the request itself fails.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpReply {
        self.proxy.request(method, path, headers)
    }

    /// `GET path` through the proxy.
    pub fn get(&self, path: &str) -> HttpReply {
        self.request("GET", path, &[])
    }

    /// `POST path` with `body` through the proxy.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: String) -> HttpReply {
        let url = format!("{}{path}", self.public_url());
        self.proxy
            .try_send("POST", &url, headers, body.as_bytes())
            .unwrap_or_else(|e| {
                panic!(
                    "POST {path} through caddy failed: {e}; log:\n{}",
                    self.log()
                )
            })
    }

    /// GETs an absolute URL through the proxy (follows nothing); for links kited sent.
    pub fn get_url(&self, url: &str) -> HttpReply {
        self.proxy
            .try_send("GET", url, &[], b"")
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}; caddy log:\n{}", self.log()))
    }
}
