//! Starts the store, session, socket and HTTP listeners; runs until a signal or `shutdown`.

use crate::clock;
use crate::config::{Config, Flags, SecretSource};
use crate::events::EventBus;
use crate::session::Session;
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// How long the listeners get to finish after a stop is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Runs the daemon in the foreground until SIGTERM/SIGINT or the `shutdown` op.
pub fn run(flags: Flags) -> anyhow::Result<ExitCode> {
    // Everything kited creates (sled's files included) is private whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    init_logging();
    let config = Config::from_process(&flags)?;
    // One thread: the work is tiny and I/O bound, and an idle daemon should have nothing awake.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(flags, config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(flags: Flags, config: Config) -> anyhow::Result<()> {
    // Before READY=1: a SIGTERM that follows it at once must stop kited cleanly, not kill it
    // with the default action. Signals that arrive while starting wait for the loop below.
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let store = Store::open(&config.state_dir, &config.profile)?;
    let now = clock_for(&config);
    let socket = crate::ipc::bind(&config.socket)?;
    let socket_file = crate::socket_file::SocketFile::claim(&config.socket);
    let http = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.listen))?;
    let bound = http.local_addr().context("HTTP listener has no address")?;
    let events = EventBus::new(now.clone());
    let session = Session::new(Settings::new(config, bound), store, events, now)?;
    let config = session.config();

    if !config.is_configured() {
        tracing::warn!(
            "not configured: the api key or secret is missing (`kited check-config` says which); \
             serving status only"
        );
    }
    tracing::info!(
        profile = %config.profile,
        socket = %config.socket.display(),
        http = %bound,
        callback = %session.callback_url(),
        state = %session.status().state,
        "kited is ready"
    );

    let shutdown = CancellationToken::new();
    let ipc_task = tokio::spawn(crate::ipc::serve(socket, session.clone(), shutdown.clone()));
    let http_task = tokio::spawn(crate::http::serve(http, session.clone(), shutdown.clone()));
    let schedule_task = tokio::spawn(crate::schedule::run(session.clone(), shutdown.clone()));
    let notify_task = tokio::spawn(crate::notify::run(session.clone(), shutdown.clone()));
    let hooks_task = tokio::spawn(crate::hooks::run(session.clone(), shutdown.clone()));
    let store_task = tokio::spawn(crate::store_health::run(session.clone(), shutdown.clone()));
    // Both listeners are bound (connections queue in their backlogs until the tasks accept), so
    // this is the moment `systemctl start` may return and clients may connect.
    let status = status_line(&session);
    systemd_notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    let status_task =
        under_systemd().then(|| tokio::spawn(report_status(session.clone(), shutdown.clone())));
    let watchdog_task = watchdog_interval().map(|every| {
        tracing::info!("systemd watchdog enabled: pinging every {every:?}");
        tokio::spawn(ping_watchdog(every, shutdown.clone()))
    });

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break }
            _ = hangup.recv() => reload(&flags, &session),
        }
    }
    systemd_notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("stopping"),
    ]);
    shutdown.cancel();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = ipc_task.await;
        let _ = http_task.await;
        let _ = schedule_task.await;
        let _ = notify_task.await;
        let _ = hooks_task.await;
        let _ = store_task.await;
        if let Some(task) = status_task {
            let _ = task.await;
        }
        if let Some(task) = watchdog_task {
            let _ = task.await;
        }
    })
    .await;
    // Only now, with the listener closed: removes the socket file if it is still ours.
    drop(socket_file);
    tracing::info!("stopped");
    Ok(())
}

/// The daemon's clock: the wall clock, or — for tests that must not wait for 06:00 — the wall
/// clock moved so that it read `KITED_FAKE_NOW` when kited started.
fn clock_for(config: &Config) -> clock::Now {
    let Some(fake) = config.testing.fake_now else {
        return clock::system_now();
    };
    let skew = fake.with_timezone(&chrono::Utc) - chrono::Utc::now();
    tracing::warn!("KITED_FAKE_NOW is set: the clock reads {fake} (testing only)");
    Arc::new(move || chrono::Utc::now() + skew)
}

/// SIGHUP: re-reads the whole config; a bad one is reported and the old one kept. Tells systemd
/// (RELOADING=1 … READY=1) so that `systemctl reload` shows the reload as it happens.
fn reload(flags: &Flags, session: &Session) {
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    // systemd >= 253 wants the monotonic time with RELOADING=1; older versions ignore it.
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    systemd_notify(&reloading);
    let outcome = match Config::from_process(flags) {
        Ok(new) => {
            let old = session.config();
            if new.listen != old.listen
                || new.socket != old.socket
                || new.state_dir != old.state_dir
            {
                tracing::warn!(
                    "http.listen, ipc.socket and store.dir take effect only after a restart"
                );
            }
            session.reload(new);
            tracing::info!(
                callback = %session.callback_url(),
                "SIGHUP: configuration reloaded"
            );
            status_line(session)
        }
        Err(e) => {
            tracing::error!("SIGHUP: reload refused, keeping the old configuration: {e}");
            format!(
                "reload failed, old configuration kept ({e}); {}",
                status_line(session)
            )
        }
    };
    systemd_notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&outcome),
    ]);
}

/// Whether a service manager listens for sd_notify messages (`NOTIFY_SOCKET`).
fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// Sends sd_notify state changes; without `NOTIFY_SOCKET` this does nothing. A failure to reach
/// the manager is logged at debug level and otherwise ignored: it must never stop the daemon.
fn systemd_notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("cannot notify the service manager: {e}");
    }
}

/// One line for `systemctl status`: profile, state and expiry. Never the token.
fn status_line(session: &Session) -> String {
    let status = session.status();
    let state = status.state.as_str();
    if !status.configured {
        return format!(
            "profile {}: not configured (api key or secret missing)",
            status.profile
        );
    }
    match (&status.user_id, &status.expires_at) {
        (Some(user), Some(expires)) if status.valid => {
            format!(
                "profile {}: {state}, {user} until {expires}",
                status.profile
            )
        }
        _ => format!("profile {}: {state}, login required", status.profile),
    }
}

/// Keeps the `STATUS=` line current. Wakes only when something changes (a token, a reload or an
/// event), never on a timer.
async fn report_status(session: Session, shutdown: CancellationToken) {
    let mut token = session.watch_token();
    let mut config = session.watch_settings();
    let mut events = session.events().subscribe();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = token.changed() => if changed.is_err() { return },
            changed = config.changed() => if changed.is_err() { return },
            event = events.recv() => {
                if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
        }
        let line = status_line(&session);
        systemd_notify(&[sd_notify::NotifyState::Status(&line)]);
    }
}

/// The ping interval when systemd's watchdog is on for this process (`WATCHDOG_USEC`, and
/// `WATCHDOG_PID` naming us if set): half the timeout, as sd_watchdog_enabled(3) advises.
fn watchdog_interval() -> Option<Duration> {
    watchdog_interval_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// Sends `WATCHDOG=1` every `every` from the daemon's own (single-threaded) runtime: if any task
/// ever blocks that thread, the pings stop and systemd restarts kited.
async fn ping_watchdog(every: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => systemd_notify(&[sd_notify::NotifyState::Watchdog]),
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). When stderr is the journal
/// (`JOURNAL_STREAM` names our stderr, see systemd.exec(5)), lines carry no timestamp (the journal
/// stamps them) and start with a `<N>` syslog priority, so `journalctl -p warning` works.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::log_writer::LossyStderr)
        // Its own report of a failed write is an `eprintln!`, which panics on a broken stderr.
        .log_internal_errors(false)
        .with_ansi(false)
        .with_target(false);
    if stderr_is_journal() {
        let format = tracing_subscriber::fmt::format()
            .without_time()
            .with_ansi(false)
            .with_target(false);
        builder.event_format(JournalPriority(format)).init();
    } else {
        builder.init();
    }
}

/// Whether stderr is the journal stream systemd connected us to: `JOURNAL_STREAM=DEV:INODE`
/// matching stderr (a variable inherited by a process whose stderr was redirected does not count).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(stat) => dev.parse() == Ok(stat.st_dev) && ino.parse() == Ok(stat.st_ino),
        Err(_) => false,
    }
}

/// Prefixes each line with its sd-daemon(3) priority (`<3>` error … `<7>` debug).
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// `kited check-config`: the resolved settings (secret as set/missing) and the callback URL.
pub fn check_config(flags: &Flags) -> anyhow::Result<ExitCode> {
    let config = Config::from_process(flags)?;
    let callback = config.callback_url(config.listen.port());
    let (secret, secret_ok, secret_path) = describe_secret(&config);
    let file = if config.config_file_found {
        ""
    } else {
        " (not found; defaults used)"
    };
    let rows = [
        ("profile", config.profile.clone()),
        (
            "config file",
            format!("{}{file}", config.config_path.display()),
        ),
        (
            "kite.api_key",
            config.api_key.clone().unwrap_or_else(|| "missing".into()),
        ),
        ("kite.api_secret", secret),
        ("kite.api_root", config.api_root.clone()),
        ("kite.login_url", config.login_url.clone()),
        (
            "kite.timeout",
            humantime::format_duration(config.kite_timeout).to_string(),
        ),
        (
            "kite.user_id",
            config
                .expected_user_id
                .clone()
                .unwrap_or_else(|| "(any)".into()),
        ),
        ("http.listen", config.listen.to_string()),
        (
            "http.public_url",
            config
                .public_url
                .as_ref()
                .map_or_else(|| "(none: loopback only)".into(), ToString::to_string),
        ),
        ("http.allowed_origins", config.allowed_origins.join(", ")),
        ("http.postbacks", config.postbacks.to_string()),
        ("ipc.socket", config.socket.display().to_string()),
        ("store.dir", config.state_dir.display().to_string()),
        (
            "expiry.cutoff",
            config.expiry.cutoff.format("%H:%M IST").to_string(),
        ),
        (
            "expiry.warn_before",
            config
                .expiry
                .warn_before
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "expiry.reminder",
            format!("{} (IST)", config.expiry.reminder.as_str()),
        ),
        (
            "expiry.holidays",
            config
                .expiry
                .holidays
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        (
            "expiry.verify_every",
            humantime::format_duration(config.expiry.verify_every).to_string(),
        ),
        ("notify.desktop", config.notify.desktop.to_string()),
        ("notify.command", config.notify.command.join(" ")),
        ("notify.open_command", config.notify.open_command.join(" ")),
        (
            "hooks.env_file",
            config
                .env_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("callback URL", callback.clone()),
    ];
    for (key, value) in rows {
        println!("{key:<22} {value}");
    }
    println!(
        "\nRegister this redirect URL for your app on https://developers.kite.trade: {callback}"
    );
    if let Some(path) = secret_path {
        if let Some(warning) = loose_permissions(&path) {
            println!("\nwarning: {warning}");
        }
    }
    let key_ok = config.api_key.as_deref().is_some_and(|k| !k.is_empty());
    if key_ok && secret_ok {
        return Ok(ExitCode::SUCCESS);
    }
    let missing = match (key_ok, secret_ok) {
        (false, false) => "the api key and the api secret are",
        (false, true) => "the api key is",
        _ => "the api secret is",
    };
    eprintln!(
        "kited: not configured: {missing} missing; run `kitectl{} setup` (or set kite.api_key or \
         KITE_API_KEY, and put the secret in {})",
        profile_flag(&config.profile),
        config.profile_secret_file.display()
    );
    Ok(ExitCode::FAILURE)
}

/// ` --profile NAME` for a command line, or nothing for the default profile.
fn profile_flag(profile: &str) -> String {
    if profile == kite_proto::socket_path::DEFAULT_PROFILE {
        String::new()
    } else {
        format!(" --profile {profile}")
    }
}

/// The `kite.api_secret` row (where the secret comes from, never its value), whether it is
/// usable, and the file it lives in.
fn describe_secret(config: &Config) -> (String, bool, Option<PathBuf>) {
    let empty = config.api_secret.as_ref().is_some_and(|s| s.is_empty());
    let state = if empty { "empty" } else { "set" };
    match &config.secret_source {
        SecretSource::Env => (format!("{state} (KITE_API_SECRET)"), !empty, None),
        SecretSource::File(p) => (
            format!("{state} (kite.api_secret_file {})", p.display()),
            !empty,
            Some(p.clone()),
        ),
        SecretSource::Credential(p) => (
            format!("{state} (systemd credential {})", p.display()),
            !empty,
            None,
        ),
        SecretSource::ProfileFile(p) => (
            format!("{state} (the profile's secret file {})", p.display()),
            !empty,
            Some(p.clone()),
        ),
        SecretSource::Missing if config.profile_secret_file.exists() => (
            format!(
                "missing ({} is empty)",
                config.profile_secret_file.display()
            ),
            false,
            None,
        ),
        SecretSource::Missing => ("missing".to_string(), false, None),
    }
}

/// A warning when a secret file can be read by other users.
fn loose_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} can be read by other users (mode {mode:04o}): chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_us() {
        let half = Some(Duration::from_secs(5));
        assert_eq!(watchdog_interval_from(Some("10000000"), None, 42), half);
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("42"), 42),
            half
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("41"), 42),
            None
        );
        assert_eq!(
            watchdog_interval_from(Some("10000000"), Some("x"), 42),
            None
        );
        assert_eq!(watchdog_interval_from(None, Some("42"), 42), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 42), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 42), None);
    }

    #[test]
    fn loose_secret_files_are_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(loose_permissions(&path), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = loose_permissions(&path).unwrap();
        assert!(
            warning.contains("0644") && warning.contains("chmod 600"),
            "{warning}"
        );
    }
}
