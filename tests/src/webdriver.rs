//! A small W3C WebDriver client for headless Debian Chromium, spoken with the blocking
//! [`http_client`](crate::http_client): enough to load pages, find elements by CSS selector,
//! click, type, run scripts, read the console and save screenshots.
//!
//! [`Browser::launch`] starts `/usr/bin/chromedriver --port=N` in its own process group and
//! opens a session on `/usr/bin/chromium --headless=new` with a throwaway profile. Dropping the
//! [`Browser`] deletes the session and kills that process group, so no browser outlives a test.
//!
//! When Chromium or chromedriver is missing, [`Browser::launch`] panics with the packages to
//! install, unless `KITED_SKIP_BROWSER=1` is set, in which case it returns `None`.
//! `KITED_CHROMEDRIVER` and `KITED_CHROMIUM` override the two paths; `KITED_BROWSER_ARTIFACTS`
//! overrides where screenshots go (default `target/browser-artifacts`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{free_port, POLL_INTERVAL};
use crate::http_client;

/// The W3C name of an element reference in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_DEADLINE: Duration = Duration::from_secs(15);
/// How long creating a session (starting Chromium) may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Any other command (page loads are capped at [`PAGE_LOAD`] by the session itself).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const PAGE_LOAD: Duration = Duration::from_secs(20);

/// What a WebDriver command answered instead of success.
#[derive(Debug, Clone)]
pub struct WdError {
    /// The HTTP status (0 when the request itself failed).
    pub status: u16,
    /// The W3C error code, e.g. `no such element`.
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebDriver {} {}: {}",
            self.status, self.error, self.message
        )
    }
}

/// One browser console entry (`goog:loggingPrefs`).
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    pub message: String,
}

/// A headless Chromium session driven through chromedriver. See the module docs.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    name: String,
    artifacts: PathBuf,
    // Last, so it is removed after Chromium is gone. Holds `profile/` and `chromedriver.log`.
    _dir: tempfile::TempDir,
}

fn env_path(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

/// Where screenshots go: `$KITED_BROWSER_ARTIFACTS`, else `<cargo target dir>/browser-artifacts`
/// (found as the nearest ancestor of the test executable holding `CACHEDIR.TAG`).
pub fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITED_BROWSER_ARTIFACTS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(|target| target.join("browser-artifacts"))
        .unwrap_or_else(|| std::env::temp_dir().join("kited-browser-artifacts"))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `name` prefixes the screenshots.
    /// `None` only when the browser is missing and `KITED_SKIP_BROWSER=1`.
    pub fn launch(name: &str) -> Option<Browser> {
        let driver_path = env_path("KITED_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = env_path("KITED_CHROMIUM", "/usr/bin/chromium");
        let missing: Vec<String> = [&driver_path, &chromium]
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            if std::env::var("KITED_SKIP_BROWSER").as_deref() == Ok("1") {
                eprintln!(
                    "SKIPPED browser test {name}: {} missing and KITED_SKIP_BROWSER=1",
                    missing.join(", ")
                );
                return None;
            }
            panic!(
                "the browser tests need headless Chromium, but {} is missing: install it with \
                 `apt-get install -y chromium chromium-driver` (or set KITED_SKIP_BROWSER=1 to \
                 skip these tests)",
                missing.join(" and ")
            );
        }
        let profile = tempfile::Builder::new()
            .prefix("kited-chromium-")
            .tempdir()
            .expect("cannot create a Chromium profile dir");
        let mut last_error = String::new();
        for attempt in 0..3 {
            match Self::try_launch(name, &driver_path, &chromium, profile.path(), attempt) {
                Ok((driver, base, session)) => {
                    let artifacts = artifacts_dir();
                    let _ = fs::create_dir_all(&artifacts);
                    return Some(Browser {
                        driver,
                        base,
                        session,
                        name: name.to_string(),
                        artifacts,
                        _dir: profile,
                    });
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start headless Chromium through chromedriver: {last_error}");
    }

    fn try_launch(
        name: &str,
        driver_path: &Path,
        chromium: &Path,
        dir: &Path,
        attempt: u32,
    ) -> Result<(Child, String, String), String> {
        let port = free_port();
        let log = dir.join(format!("chromedriver-{attempt}.log"));
        let profile = dir.join(format!("profile-{attempt}"));
        let log_file = fs::File::create(&log).map_err(|e| format!("chromedriver log: {e}"))?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(driver_path);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(err_file));
        // Its own process group, so Drop can take Chromium down with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", driver_path.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let kill = |driver: &mut Child, why: String| {
            kill_group(driver);
            let log = fs::read_to_string(&log).unwrap_or_default();
            Err(format!("{why}; chromedriver log:\n{log}"))
        };
        let deadline = Instant::now() + DRIVER_DEADLINE;
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                return kill(&mut driver, format!("chromedriver exited ({status})"));
            }
            let ready = http_client::request_with_timeout(
                "GET",
                &format!("{base}/status"),
                &[],
                b"",
                Duration::from_secs(2),
            )
            .ok()
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if Instant::now() >= deadline {
                return kill(
                    &mut driver,
                    format!("chromedriver on port {port} not ready within {DRIVER_DEADLINE:?}"),
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {"implicit": 0, "pageLoad": PAGE_LOAD.as_millis() as u64, "script": 10_000},
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        match command_at(
            &base,
            "POST",
            "/session",
            Some(&capabilities),
            SESSION_TIMEOUT,
        ) {
            Ok(value) => match value["sessionId"].as_str() {
                Some(session) => Ok((driver, base, session.to_string())),
                None => kill(&mut driver, format!("no sessionId in {value} ({name})")),
            },
            Err(e) => kill(&mut driver, format!("cannot create a session: {e}")),
        }
    }

    /// Sends one command to this session (`path` relative to `/session/{id}`).
    pub fn command(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WdError> {
        command_at(
            &self.base,
            method,
            &format!("/session/{}{path}", self.session),
            body,
            COMMAND_TIMEOUT,
        )
    }

    fn must(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Navigates and waits for the load (`pageLoadStrategy: normal`).
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(&json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching a CSS selector, as a WebDriver element id.
    pub fn find(&self, css: &str) -> Result<String, WdError> {
        let value = self.command(
            "POST",
            "/element",
            Some(&json!({"using": "css selector", "value": css})),
        )?;
        value[ELEMENT_KEY]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| WdError {
                status: 200,
                error: "bad element reference".into(),
                message: value.to_string(),
            })
    }

    /// [`find`](Self::find), panicking with the page's text when there is no such element.
    pub fn element(&self, css: &str) -> String {
        self.find(css).unwrap_or_else(|e| {
            panic!(
                "no element {css:?} on {}: {e}\npage text:\n{}",
                self.current_url(),
                self.page_text()
            )
        })
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.must("POST", &format!("/element/{id}/click"), Some(&json!({})));
    }

    /// Types `text` into an input (after clearing it).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.must("POST", &format!("/element/{id}/clear"), Some(&json!({})));
        self.must(
            "POST",
            &format!("/element/{id}/value"),
            Some(&json!({ "text": text })),
        );
    }

    /// The rendered text of an element ("" when it is hidden).
    pub fn text(&self, css: &str) -> Result<String, WdError> {
        let id = self.find(css)?;
        Ok(self
            .command("GET", &format!("/element/{id}/text"), None)?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Whether the element is rendered (not `hidden`, `display: none`, ...).
    pub fn displayed(&self, css: &str) -> bool {
        let id = self.element(css);
        self.must("GET", &format!("/element/{id}/displayed"), None) == json!(true)
    }

    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let id = self.find(css).ok()?;
        self.command("GET", &format!("/element/{id}/attribute/{name}"), None)
            .ok()?
            .as_str()
            .map(str::to_string)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub fn js(&self, script: &str, args: &[Value]) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// The whole page's visible text, for failure messages.
    pub fn page_text(&self) -> String {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({"script": "return document.body ? document.body.innerText : ''", "args": []})),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
    }

    /// The console entries since the last call (Chromium clears them as they are read).
    pub fn console(&self) -> Vec<LogEntry> {
        self.command("POST", "/se/log", Some(&json!({"type": "browser"})))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Console errors (level `SEVERE`: script errors, CSP violations, failed loads) since the
    /// last [`console`](Self::console) read.
    pub fn console_errors(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect()
    }

    /// Polls `check` until it holds; on timeout saves a `timeout` screenshot and panics with
    /// `what`, the URL and the page text.
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Browser) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot("timeout");
                panic!(
                    "timed out after {timeout:?} waiting for {what} on {} (screenshot {})\n\
                     page text:\n{}\nconsole: {:?}",
                    self.current_url(),
                    shot.display(),
                    self.page_text(),
                    self.console()
                );
            }
            std::thread::sleep(POLL_INTERVAL * 5);
        }
    }

    /// Waits until the text of `css` satisfies `pred`; returns that text.
    pub fn wait_text(&self, css: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut seen = String::new();
        self.wait_until(Duration::from_secs(10), what, |b| match b.text(css) {
            Ok(text) => {
                let ok = pred(&text);
                seen = text;
                ok
            }
            Err(_) => false,
        });
        seen
    }

    /// Sets the window's outer size (e.g. 390x844 for a phone).
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.must(
            "POST",
            "/window/rect",
            Some(&json!({"width": width, "height": height})),
        );
    }

    /// Saves a PNG of the viewport as `<artifacts>/<name>-<step>.png` and returns its path.
    pub fn screenshot(&self, step: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{}-{step}.png", self.name));
        match self.command("GET", "/screenshot", None) {
            Ok(Value::String(data)) => match base64_decode(&data) {
                Some(png) => {
                    let _ = fs::create_dir_all(&self.artifacts);
                    if let Err(e) = fs::write(&path, png) {
                        eprintln!("cannot save {}: {e}", path.display());
                    }
                }
                None => eprintln!("screenshot {step}: not base64"),
            },
            Ok(other) => eprintln!("screenshot {step}: unexpected {other}"),
            Err(e) => eprintln!("screenshot {step}: {e}"),
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = command_at(
            &self.base,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
            Duration::from_secs(10),
        );
        kill_group(&mut self.driver);
    }
}

/// SIGKILLs chromedriver's process group (it and the Chromium it started), then reaps it.
fn kill_group(driver: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(driver.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = driver.kill();
    let _ = driver.wait();
}

fn command_at(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value, WdError> {
    let url = format!("{base}{path}");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("Content-Type", "application/json; charset=utf-8")]
    } else {
        &[]
    };
    let reply =
        http_client::request_with_timeout(method, &url, headers, payload.as_bytes(), timeout)
            .map_err(|e| WdError {
                status: 0,
                error: "request failed".into(),
                message: format!("{method} {url}: {e}"),
            })?;
    let value: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status == 200 {
        return Ok(value.get("value").cloned().unwrap_or(Value::Null));
    }
    Err(WdError {
        status: reply.status,
        error: value["value"]["error"]
            .as_str()
            .unwrap_or("unknown error")
            .to_string(),
        message: value["value"]["message"]
            .as_str()
            .map(|m| m.lines().next().unwrap_or("").to_string())
            .unwrap_or_else(|| reply.text()),
    })
}

/// Standard base64 (with or without padding) to bytes; `None` on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a*b").is_none());
    }
}
