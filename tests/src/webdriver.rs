//! Headless Debian Chromium for the browser tests, driven through chromedriver with the
//! maintained `fantoccini` WebDriver client behind a small blocking API: load pages, find
//! elements by CSS selector, click, type, run scripts, read the console, save screenshots.
//!
//! [`Browser::launch`] starts `/usr/bin/chromedriver --port=N` in its own process group and
//! opens a session on `/usr/bin/chromium --headless=new` with a throwaway profile. Dropping the
//! [`Browser`] closes the session and kills that process group, so no browser outlives a test.
//!
//! [`missing`] says whether the two programs are there, so a test runner can report the browser
//! tests as skipped (with [`INSTALL_HINT`]) instead of running them. `KITED_CHROMEDRIVER` and
//! `KITED_CHROMIUM` override the two paths; `KITED_BROWSER_ARTIFACTS` overrides where
//! screenshots go (default `target/browser-artifacts`).

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::harness::{free_port, POLL_INTERVAL};
use crate::http_client;

/// The Debian packages the browser tests need.
pub const INSTALL_HINT: &str = "apt-get install chromium chromium-driver";
/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_DEADLINE: Duration = Duration::from_secs(15);
/// How long creating a session (starting Chromium) may take.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Any other command (page loads are capped at [`PAGE_LOAD`] by the session itself).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const PAGE_LOAD: Duration = Duration::from_secs(20);
/// Attempts at starting chromedriver and a session: a loaded machine sometimes loses the first.
const LAUNCH_ATTEMPTS: u32 = 3;

/// One browser console entry (`goog:loggingPrefs`).
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// `SEVERE`, `WARNING`, `INFO`, ...
    pub level: String,
    pub message: String,
}

fn env_path(var: &str, default: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

fn chromedriver_path() -> PathBuf {
    env_path("KITED_CHROMEDRIVER", "/usr/bin/chromedriver")
}

fn chromium_path() -> PathBuf {
    env_path("KITED_CHROMIUM", "/usr/bin/chromium")
}

/// The browser programs that are not installed (empty when the browser tests can run).
pub fn missing() -> Vec<PathBuf> {
    [chromedriver_path(), chromium_path()]
        .into_iter()
        .filter(|p| !p.is_file())
        .collect()
}

/// Whether a missing browser must fail the browser tests rather than skip them: in CI
/// (`CI=true`) and whenever `KITED_REQUIRE_BROWSER=1`.
pub fn browser_required() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
        || std::env::var("KITED_REQUIRE_BROWSER").as_deref() == Ok("1")
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

/// A headless Chromium session driven through chromedriver. See the module docs.
pub struct Browser {
    /// fantoccini is async; this runtime runs each command to completion for the blocking API.
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    name: String,
    artifacts: PathBuf,
    // Last, so it is removed after Chromium is gone. Holds the profiles and chromedriver logs.
    _dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `name` prefixes the screenshots.
    /// Panics with [`INSTALL_HINT`] when the browser is not installed.
    pub fn launch(name: &str) -> Browser {
        Browser::launch_with_args(name, &[])
    }

    /// [`Browser::launch`] with extra Chromium switches (e.g. `--host-resolver-rules=…`).
    pub fn launch_with_args(name: &str, extra_args: &[String]) -> Browser {
        let missing = missing();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
            panic!(
                "the browser tests need headless Chromium, but {} is missing: install it with \
                 `{INSTALL_HINT}`",
                names.join(" and ")
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cannot build a tokio runtime");
        let dir = tempfile::Builder::new()
            .prefix("kited-chromium-")
            .tempdir()
            .expect("cannot create a Chromium profile dir");
        let mut last_error = String::new();
        for attempt in 0..LAUNCH_ATTEMPTS {
            match start_session(&runtime, dir.path(), attempt, extra_args) {
                Ok((driver, client)) => {
                    let artifacts = artifacts_dir();
                    let _ = fs::create_dir_all(&artifacts);
                    return Browser {
                        runtime,
                        client: Some(client),
                        driver,
                        name: name.to_string(),
                        artifacts,
                        _dir: dir,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start headless Chromium through chromedriver: {last_error}");
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Runs one WebDriver command to completion, bounded by [`COMMAND_TIMEOUT`].
    fn run<T>(&self, command: impl Future<Output = Result<T, CmdError>>) -> Result<T, CmdError> {
        self.runtime.block_on(async {
            tokio::time::timeout(COMMAND_TIMEOUT, command)
                .await
                .unwrap_or_else(|_| {
                    Err(CmdError::Lost(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer from chromedriver within {COMMAND_TIMEOUT:?}"),
                    )))
                })
        })
    }

    fn must<T>(&self, what: &str, command: impl Future<Output = Result<T, CmdError>>) -> T {
        self.run(command)
            .unwrap_or_else(|e| panic!("WebDriver {what}: {e}"))
    }

    /// Navigates and waits for the load (`pageLoadStrategy: normal`).
    pub fn goto(&self, url: &str) {
        self.must(&format!("goto {url}"), self.client().goto(url));
    }

    pub fn current_url(&self) -> String {
        self.must("current url", self.client().current_url())
            .to_string()
    }

    /// The first element matching a CSS selector.
    pub fn find(&self, css: &str) -> Result<Element, CmdError> {
        self.run(self.client().find(Locator::Css(css)))
    }

    /// [`find`](Self::find), panicking with the page's text when there is no such element.
    pub fn element(&self, css: &str) -> Element {
        self.find(css).unwrap_or_else(|e| {
            panic!(
                "no element {css:?} on {}: {e}\npage text:\n{}",
                self.current_url(),
                self.page_text()
            )
        })
    }

    pub fn click(&self, css: &str) {
        let element = self.element(css);
        self.must(&format!("click {css}"), element.click());
    }

    /// Types `text` into an input (after clearing it).
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.must(&format!("clear {css}"), element.clear());
        self.must(&format!("type into {css}"), element.send_keys(text));
    }

    /// The rendered text of an element ("" when it is hidden).
    pub fn text(&self, css: &str) -> Result<String, CmdError> {
        let element = self.find(css)?;
        self.run(element.text())
    }

    /// Whether the element is rendered (not `hidden`, `display: none`, ...).
    pub fn displayed(&self, css: &str) -> bool {
        let element = self.element(css);
        self.must(&format!("displayed {css}"), element.is_displayed())
    }

    pub fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css).ok()?;
        self.run(element.attr(name)).ok().flatten()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub fn js(&self, script: &str, args: &[Value]) -> Value {
        self.must("execute", self.client().execute(script, args.to_vec()))
    }

    /// The whole page's visible text, for failure messages.
    pub fn page_text(&self) -> String {
        let script = "return document.body ? document.body.innerText : ''";
        self.run(self.client().execute(script, Vec::new()))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The console entries since the last call (Chromium clears them as they are read).
    pub fn console(&self) -> Vec<LogEntry> {
        self.run(self.client().issue_cmd(BrowserLog))
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
            "set window size",
            self.client().set_window_size(width, height),
        );
    }

    /// Saves a PNG of the viewport as `<artifacts>/<name>-<step>.png` and returns its path.
    pub fn screenshot(&self, step: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{}-{step}.png", self.name));
        match self.run(self.client().screenshot()) {
            Ok(png) => {
                let _ = fs::create_dir_all(&self.artifacts);
                if let Err(e) = fs::write(&path, png) {
                    eprintln!("cannot save {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("screenshot {step}: {e}"),
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.run(client.close());
        }
        kill_group(&mut self.driver);
    }
}

/// Chromedriver's log endpoint (`POST /session/{id}/se/log`), which W3C WebDriver lacks.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// Starts chromedriver on a free port and opens a session on it.
fn start_session(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    attempt: u32,
    extra_args: &[String],
) -> Result<(Child, Client), String> {
    let driver_path = chromedriver_path();
    let port = free_port();
    let log = dir.join(format!("chromedriver-{attempt}.log"));
    let profile = dir.join(format!("profile-{attempt}"));
    let log_file = fs::File::create(&log).map_err(|e| format!("chromedriver log: {e}"))?;
    let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(&driver_path);
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
    let fail = |driver: &mut Child, why: String| {
        kill_group(driver);
        let log = fs::read_to_string(&log).unwrap_or_default();
        Err(format!("{why}; chromedriver log:\n{log}"))
    };
    let deadline = Instant::now() + DRIVER_DEADLINE;
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return fail(&mut driver, format!("chromedriver exited ({status})"));
        }
        let status_url = format!("{base}/status");
        let ready =
            http_client::request_with_timeout("GET", &status_url, &[], b"", Duration::from_secs(2))
                .ok()
                .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
        if ready {
            break;
        }
        if Instant::now() >= deadline {
            let why = format!("chromedriver on port {port} not ready within {DRIVER_DEADLINE:?}");
            return fail(&mut driver, why);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let mut capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": {"implicit": 0, "pageLoad": PAGE_LOAD.as_millis() as u64, "script": 10_000},
        "goog:loggingPrefs": {"browser": "ALL"},
        "goog:chromeOptions": {
            "binary": chromium_path().display().to_string(),
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
    });
    if let Some(args) = capabilities["goog:chromeOptions"]["args"].as_array_mut() {
        args.extend(extra_args.iter().cloned().map(Value::from));
    }
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object literal")
    };
    let connect = async {
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        tokio::time::timeout(SESSION_TIMEOUT, builder.connect(&base)).await
    };
    match runtime.block_on(connect) {
        Ok(Ok(client)) => Ok((driver, client)),
        Ok(Err(e)) => fail(&mut driver, format!("cannot create a session: {e}")),
        Err(_) => fail(
            &mut driver,
            format!("no session within {SESSION_TIMEOUT:?}"),
        ),
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
