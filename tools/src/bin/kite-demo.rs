//! kite-demo: the whole daily login on one machine without a Kite account. Starts the Kite
//! simulator and a real kited on a private profile (config, state, socket in a temp dir),
//! prints the page to open and the kitectl commands to try, and cleans up on Ctrl-C.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kite_tests::harness::free_port;
use kite_tests::http_client;
use kite_tests::sim::{Sim, SimConfig};

/// kited opens its store and binds two sockets; a few seconds is plenty even on a busy machine.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long kited gets to stop after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// The demo's profile name: its own socket and state, never the user's `default`.
const PROFILE: &str = "demo";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kite-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let bins = binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("kite-demo-")
        .tempdir()
        .context("cannot create a temp dir")?;
    for sub in ["config", "run", "state"] {
        let path = dir.path().join(sub);
        std::fs::create_dir(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    }
    let port = free_port();
    let page = format!("http://127.0.0.1:{port}/");
    let sim = Sim::start(SimConfig {
        redirect_url: Some(format!("{page}auth/callback")),
        ..SimConfig::default()
    });
    let socket = dir.path().join("run/kited.sock");
    let config = dir.path().join("config/demo.toml");
    // No desktop pop-ups from a demo; everything else at its defaults.
    std::fs::write(&config, "[notify]\ndesktop = false\n")?;
    let log_path = dir.path().join("kited.log");
    let log = std::fs::File::create(&log_path)?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut kited = tokio::process::Command::new(&bins.kited);
        kited
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_RUNTIME_DIR", dir.path().join("run"))
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("KITE_API_ROOT", sim.url())
            .env("KITE_LOGIN_URL", sim.login_url())
            .env("KITE_API_KEY", sim.api_key())
            .env("KITE_API_SECRET", sim.api_secret())
            .args(["--profile", PROFILE, "--config"])
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state/demo"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "run"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: Ctrl-C reaches the demo, which stops kited in order.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's memory.
        unsafe {
            kited.pre_exec(|| {
                // Even a `kill -9` of the demo takes kited with it.
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut kited = kited
            .spawn()
            .with_context(|| format!("cannot start {}", bins.kited.display()))?;
        if let Err(e) = wait_ready(&socket, port, &mut kited).await {
            let _ = kited.start_kill();
            bail!(
                "{e}; kited's log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        print_guide(&page, &bins.kitectl, &socket, &log_path, dir.path())?;

        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let stopped_by_itself = tokio::select! {
            _ = tokio::signal::ctrl_c() => None,
            _ = term.recv() => None,
            status = kited.wait() => Some(status?),
        };
        if let Some(status) = stopped_by_itself {
            bail!(
                "kited stopped ({status}); its log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        eprintln!(
            "\nkite-demo: stopping kited and the simulator, removing {}",
            dir.path().display()
        );
        stop(&mut kited).await;
        anyhow::Ok(())
    })?;
    drop(sim);
    dir.close().context("cannot remove the demo directory")?;
    Ok(())
}

struct Binaries {
    kited: PathBuf,
    kitectl: PathBuf,
}

/// kited and kitectl from this build: `$KITED_BIN_DIR`, else next to this program. Under
/// `cargo run` they are built first (cargo builds only this package's binaries for it).
fn binaries() -> anyhow::Result<Binaries> {
    let dir = match std::env::var_os("KITED_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().context("cannot find this program")?;
            let dir = exe
                .parent()
                .context("this program has no directory")?
                .to_path_buf();
            if let Some(cargo) = std::env::var_os("CARGO") {
                let release = dir.ends_with("release");
                eprintln!("kite-demo: building kited and kitectl…");
                let mut build = std::process::Command::new(cargo);
                build.args(["build", "--quiet", "-p", "kited", "-p", "kitectl"]);
                if release {
                    build.arg("--release");
                }
                let status = build.status().context("cannot run cargo build")?;
                if !status.success() {
                    bail!("cargo build -p kited -p kitectl failed ({status})");
                }
            }
            dir
        }
    };
    let find = |name: &str| {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(anyhow::anyhow!(
                "{} does not exist: run `cargo build -p kited -p kitectl` first",
                path.display()
            ))
        }
    };
    Ok(Binaries {
        kited: find("kited")?,
        kitectl: find("kitectl")?,
    })
}

/// Waits until the socket answers `ping` and `/healthz` answers 200, or kited exits.
async fn wait_ready(
    socket: &Path,
    port: u16,
    kited: &mut tokio::process::Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_DEADLINE;
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    loop {
        if let Some(status) = kited.try_wait()? {
            bail!("kited exited at start ({status})");
        }
        let http_up = matches!(
            http_client::request_with_timeout("GET", &healthz, &[], b"", Duration::from_secs(1)),
            Ok(reply) if reply.status == 200
        );
        if http_up && pings(socket) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("kited was not ready within {READY_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pings(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut line = String::new();
    stream.write_all(b"{\"op\":\"ping\"}\n").is_ok()
        && BufReader::new(stream).read_line(&mut line).is_ok()
        && line.contains("\"ok\":true")
}

fn print_guide(
    page: &str,
    kitectl: &Path,
    socket: &Path,
    log: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    // One `export` instead of a long `--socket` on every command: kitectl reads KITED_SOCKET,
    // and the demo's kitectl comes first on PATH.
    let bin_dir = kitectl.parent().unwrap_or(Path::new("."));
    let ctl = "kitectl";
    let exec_example =
        r#"sh -c 'echo "$KITE_API_KEY: a token of ${#KITE_ACCESS_TOKEN} characters"'"#;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "kite-demo: a simulated Kite and a real kited on a private profile in {} \
         (your own profile is not touched).\n\n\
         1. Open {page} and press \"Log in with Kite\": the simulator logs you in at once.\n\n\
         2. Then, in another terminal:\n\
         \x20  export KITED_SOCKET={} PATH={}:$PATH\n\
         \x20  {ctl} status\n\
         \x20  {ctl} get-token\n\
         \x20  {ctl} exec -- {exec_example}\n\
         \x20  {ctl} watch\n\
         \x20  {ctl} logout\n\n\
         kited's log: {}\n\
         Ctrl-C stops kited and the simulator and removes that directory.",
        dir.display(),
        socket.display(),
        bin_dir.display(),
        log.display()
    )?;
    out.flush()?;
    Ok(())
}

/// SIGTERM, then SIGKILL if kited has not stopped within [`STOP_DEADLINE`].
async fn stop(kited: &mut tokio::process::Child) {
    if let Some(pid) = kited
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(STOP_DEADLINE, kited.wait())
        .await
        .is_err()
    {
        let _ = kited.kill().await;
    }
}
