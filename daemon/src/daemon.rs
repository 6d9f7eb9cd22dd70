//! Starts the store, session, socket and HTTP listeners; runs until a signal or `shutdown`.

use crate::clock;
use crate::config::{Config, Flags, SecretSource};
use crate::events::EventBus;
use crate::session::Session;
use crate::store::Store;
use anyhow::Context;
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
    let config = Arc::new(Config::from_process(&flags)?);
    // One thread: the work is tiny and I/O bound, and an idle daemon should have nothing awake.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(flags, config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(flags: Flags, config: Arc<Config>) -> anyhow::Result<()> {
    let store = Store::open(&config.state_dir, &config.profile)?;
    let now = clock_from_env()?;
    let events = EventBus::new(now.clone());
    let session = Session::new(config.clone(), store, events, now)?;

    let socket = crate::ipc::bind(&config.socket)?;
    let http = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", config.listen))?;
    let bound = http.local_addr().context("HTTP listener has no address")?;
    session.set_bound_http(bound);

    if !config.is_configured() {
        tracing::warn!("not configured: set KITE_API_KEY and KITE_API_SECRET; serving status only");
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
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break }
            _ = hangup.recv() => reload(&flags, &session),
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    // The socket listener removes its file when dropped, at the end of its task.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        let _ = ipc_task.await;
        let _ = http_task.await;
        let _ = schedule_task.await;
        let _ = notify_task.await;
        let _ = hooks_task.await;
    })
    .await;
    tracing::info!("stopped");
    Ok(())
}

/// The daemon's clock: the wall clock, or — for tests that must not wait for 06:00 — the wall
/// clock moved so that it read `KITED_FAKE_NOW` (RFC 3339) when kited started.
fn clock_from_env() -> anyhow::Result<clock::Now> {
    let Ok(fake) = std::env::var("KITED_FAKE_NOW") else {
        return Ok(clock::system_now());
    };
    let start = chrono::DateTime::parse_from_rfc3339(&fake)
        .with_context(|| format!("KITED_FAKE_NOW={fake:?} is not an RFC 3339 time"))?;
    let skew = start.with_timezone(&chrono::Utc) - chrono::Utc::now();
    tracing::warn!("KITED_FAKE_NOW is set: the clock reads {fake} (testing only)");
    Ok(Arc::new(move || chrono::Utc::now() + skew))
}

/// SIGHUP: re-reads the whole config; a bad one is reported and the old one kept.
fn reload(flags: &Flags, session: &Session) {
    match Config::from_process(flags) {
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
            session.reload(Arc::new(new));
            tracing::info!("SIGHUP: configuration reloaded");
        }
        Err(e) => tracing::error!("SIGHUP: keeping the old configuration: {e}"),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd the journal adds timestamps and cannot show colours.
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if under_journal {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// `kited check-config`: the resolved settings (secret as set/missing) and the callback URL.
pub fn check_config(flags: &Flags) -> anyhow::Result<ExitCode> {
    let config = Config::from_process(flags)?;
    let callback = format!(
        "{}/auth/callback",
        config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.listen.port()))
    );
    let secret = match &config.secret_source {
        SecretSource::Env => "set (KITE_API_SECRET)".to_string(),
        SecretSource::File(p) => format!("set (file {})", p.display()),
        SecretSource::Credential(p) => format!("set (credential {})", p.display()),
        SecretSource::Missing => "missing".to_string(),
    };
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
        ("kite.timeout", format!("{:?}", config.kite_timeout)),
        (
            "kite.user_id",
            config
                .expected_user_id
                .clone()
                .unwrap_or_else(|| "(any)".into()),
        ),
        ("http.listen", config.listen.to_string()),
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
                .map(|d| format!("{}m", d.as_secs() / 60))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("expiry.reminder", config.expiry.reminder.clone()),
        (
            "expiry.verify_every",
            format!("{:?}", config.expiry.verify_every),
        ),
        ("notify.desktop", config.notify.desktop.to_string()),
        ("notify.command", config.notify.command.join(" ")),
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
    if config.is_configured() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("kited: not configured: set KITE_API_KEY and KITE_API_SECRET (or kite.api_key and kite.api_secret_file)");
        Ok(ExitCode::FAILURE)
    }
}
