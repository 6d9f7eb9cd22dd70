//! A real nginx (Debian's) in front of a real kited, run as the test user: its own prefix in a
//! temp dir (`-p DIR -c FILE`), `daemon off`, one process, logs and pid in the temp dir, and TLS
//! with a self-signed certificate for [`PUBLIC_HOST`] made by `openssl req`. The server blocks
//! come from the caller (the operations guide's recipe, substituted). Dropping an `Nginx` stops
//! it and removes its directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::caddy::PUBLIC_HOST;
use crate::harness::POLL_INTERVAL;
use crate::http_client::HttpReply;
use crate::proxy_process::ProxyProcess;

/// The nginx binary: `$KITED_NGINX` or Debian's `/usr/sbin/nginx`.
pub fn nginx_bin() -> PathBuf {
    std::env::var_os("KITED_NGINX")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"))
}

/// A temp dir holding a fresh self-signed certificate for [`PUBLIC_HOST`] (`cert.pem`,
/// `key.pem`), for the server blocks to name before nginx starts.
pub struct NginxDir {
    dir: tempfile::TempDir,
}

impl NginxDir {
    pub fn new() -> NginxDir {
        let dir = tempfile::Builder::new()
            .prefix("kited-nginx-")
            .tempdir()
            .expect("cannot create a temp dir for nginx");
        for sub in ["logs", "tmp"] {
            fs::create_dir_all(dir.path().join(sub)).expect("cannot create an nginx subdir");
        }
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .arg("-subj")
            .arg(format!("/CN={PUBLIC_HOST}"))
            .arg("-addext")
            .arg(format!("subjectAltName=DNS:{PUBLIC_HOST}"))
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("cannot run openssl (apt-get install openssl)");
        assert!(status.success(), "openssl req failed: {status}");
        NginxDir { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for NginxDir {
    fn default() -> Self {
        NginxDir::new()
    }
}

/// A running nginx.
pub struct Nginx {
    proxy: ProxyProcess,
    // Last: the process is gone before its directory is removed.
    _dir: NginxDir,
}

impl Nginx {
    /// Starts nginx in `dir` with `servers` (server blocks) inside its `http` block, answering
    /// HTTPS on `port`, and waits until `GET https://kited.test:PORT/healthz` answers 200.
    pub fn start(dir: NginxDir, port: u16, servers: &str) -> Nginx {
        let bin = nginx_bin();
        assert!(
            bin.is_file(),
            "the proxy recipe tests need nginx at {}: install it with `apt-get install -y nginx` \
             (or set KITED_NGINX)",
            bin.display()
        );
        let root = dir.path();
        let tmp = root.join("tmp");
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log {log} info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log {access};\n    client_body_temp_path {tmp}/body;\n\
             \x20   proxy_temp_path {tmp}/proxy;\n    fastcgi_temp_path {tmp}/fastcgi;\n\
             \x20   uwsgi_temp_path {tmp}/uwsgi;\n    scgi_temp_path {tmp}/scgi;\n\n{servers}\n}}\n",
            pid = root.join("nginx.pid").display(),
            log = root.join("logs/error.log").display(),
            access = root.join("logs/access.log").display(),
            tmp = tmp.display(),
        );
        let conf_path = root.join("nginx.conf");
        fs::write(&conf_path, conf).expect("cannot write nginx.conf");
        let child = Command::new(&bin)
            .arg("-p")
            .arg(root)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(root.join("logs/error.log"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let log_path = root.join("logs/error.log");
        let mut proxy = ProxyProcess::new("nginx", child, port, log_path);
        proxy.wait_ready(|status| status == 200);
        Nginx { proxy, _dir: dir }
    }

    /// nginx's error log.
    pub fn log(&self) -> String {
        self.proxy.log()
    }

    /// `https://kited.test:PORT`.
    pub fn public_url(&self) -> String {
        self.proxy.public_url()
    }

    /// A request through nginx over HTTPS (SNI `kited.test`; `headers` may name another
    /// `Host`); redirects are not followed. `Err` when nginx closed the connection (444).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<HttpReply> {
        self.proxy.try_request(method, path, headers)
    }

    /// Like [`try_request`](Self::try_request), panicking with nginx's log on failure.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpReply {
        self.proxy.request(method, path, headers)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown; SIGKILL only if it does not go.
        let pid = rustix::process::Pid::from_raw(self.proxy.child.id() as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let mut gone = false;
        eventually_quiet(&mut self.proxy.child, &mut gone);
        if !gone {
            let _ = self.proxy.child.kill();
        }
        let _ = self.proxy.child.wait();
    }
}

/// Waits up to the harness's stop deadline for `child` to exit, without panicking.
fn eventually_quiet(child: &mut Child, gone: &mut bool) {
    let deadline = Instant::now() + crate::harness::TERM_DEADLINE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            *gone = true;
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
