//! The daemon's life: start the store, session, socket and HTTP listeners and the background
//! tasks; reload on SIGHUP; on SIGTERM, SIGINT or the `shutdown` op, stop accepting and wait for
//! the requests in flight.

pub(crate) mod log_writer;
pub(crate) mod logging;
pub(crate) mod systemd;

use crate::clock;
use crate::config::{Config, Flags};
use crate::session::events::EventBus;
use crate::session::in_flight::Settled;
use crate::session::settings::Settings;
use crate::session::Session;
use crate::store::Store;
use anyhow::Context;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a stop waits beyond `kite.timeout` (the longest a request in flight can spend at
/// Kite) for the requests and tasks still running...
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(3);
/// ...but never longer than this, which stays below the units' `TimeoutStopSec=15`, so systemd
/// never has to kill kited.
const MAX_SHUTDOWN_WAIT: Duration = Duration::from_secs(12);
/// How long a stop lets deliveries in flight (a push, a desktop notification, a
/// `notify.command`) finish: a message mid-send completes in well under a second, while a retry
/// waiting out its backoff or a server that never answers would only delay a restart.
const DELIVERY_GRACE: Duration = Duration::from_secs(2);

/// Runs the daemon in the foreground until SIGTERM/SIGINT or the `shutdown` op.
pub fn run(flags: Flags) -> anyhow::Result<ExitCode> {
    // Everything kited creates (sled's files included) is private whatever the caller's umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    crate::run::logging::init();
    let budget = crate::server::fd_budget::init();
    tracing::debug!(?budget, "open-files limit raised");
    let config = Config::from_process(&flags)?;
    // One thread: the work is tiny and I/O bound, and an idle daemon should have nothing awake.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(flags, config, budget))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    flags: Flags,
    config: Config,
    budget: crate::server::fd_budget::Budget,
) -> anyhow::Result<()> {
    // Before READY=1: a SIGTERM that follows it at once must stop kited cleanly, not kill it
    // with the default action. Signals that arrive while starting wait for the loop below.
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let store = Store::open(&config.state_dir, &config.profile)?;
    let now = clock_for(&config);
    let socket = crate::server::ipc::bind(&config.socket)?;
    let socket_file = crate::server::ipc::socket_file::SocketFile::claim(&config.socket);
    let http = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| listen_error(config.listen, e))?;
    let bound = http.local_addr().context("HTTP listener has no address")?;
    let public = match &config.public_listen {
        Some(listen) => {
            Some(crate::server::http::public_listener::PublicListener::bind(listen).await?)
        }
        None => None,
    };
    let public_at = public.as_ref().map(|p| p.describe());
    let events = EventBus::new(now.clone());
    let session = Session::new(Settings::new(config, bound), store, events, now)?;
    let config = session.config();

    if !config.is_configured() {
        tracing::warn!(
            "not configured: the api key or secret is missing (`kited check-config` says which); \
             serving status only"
        );
    }
    for warning in config
        .readiness
        .warnings()
        .into_iter()
        .chain(config.secret_file_warnings())
    {
        tracing::warn!("{warning}");
    }
    if let Some(warning) = config
        .public_url
        .as_ref()
        .and_then(|u| u.plain_http_warning())
    {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        profile = %config.profile,
        socket = %config.socket.display(),
        http = %bound,
        public = public_at.as_deref().unwrap_or("-"),
        callback = %session.callback_url(),
        state = %session.status().state,
        "kited is ready"
    );

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    tasks.spawn(crate::server::ipc::serve(
        socket,
        budget.socket,
        session.clone(),
        tasks.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::server::http::serve(
        http,
        budget.http,
        session.clone(),
        tasks.clone(),
        shutdown.clone(),
    ));
    if let Some(public) = public {
        tasks.spawn(crate::server::http::serve_public(
            public,
            budget.http,
            session.clone(),
            tasks.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(crate::schedule::run(session.clone(), shutdown.clone()));
    tasks.spawn(crate::notify::run(session.clone(), shutdown.clone()));
    tasks.spawn(crate::notify::env_file::run(
        session.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::store::health::run(session.clone(), shutdown.clone()));
    tasks.spawn(crate::notify::push::run(session.clone(), shutdown.clone()));
    tasks.spawn(crate::notify::redis_sink::run(
        session.clone(),
        shutdown.clone(),
    ));
    // Every listener is bound, the public one included (connections queue in their backlogs
    // until the tasks accept), so this is the moment `systemctl start` may return and clients
    // (and the proxy) may connect.
    systemd::ready(&systemd::status_line(&session));
    if systemd::under_systemd() {
        tasks.spawn(systemd::report_status(session.clone(), shutdown.clone()));
    }
    if let Some(every) = systemd::watchdog_interval() {
        tracing::info!("systemd watchdog enabled: pinging every {every:?}");
        tasks.spawn(systemd::ping_watchdog(every, shutdown.clone()));
    }

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = terminate.recv() => { tracing::info!("SIGTERM: stopping"); break }
            _ = interrupt.recv() => { tracing::info!("SIGINT: stopping"); break }
            _ = hangup.recv() => reload(&flags, &session),
        }
    }
    systemd::stopping();
    shutdown.cancel();
    tasks.close();
    let wait = (session.config().kite_timeout + SHUTDOWN_MARGIN).min(MAX_SHUTDOWN_WAIT);
    let (served, deliveries) = tokio::join!(
        tokio::time::timeout(wait, tasks.wait()),
        session.in_flight().settle(DELIVERY_GRACE),
    );
    if served.is_err() {
        tracing::warn!(
            "{} tasks still running after {wait:?}; stopping anyway",
            tasks.len()
        );
    }
    report_deliveries(&deliveries);
    // Only now, with the listener closed: removes the socket file if it is still ours.
    drop(socket_file);
    tracing::info!("stopped");
    Ok(())
}

/// Says what a stop did with the deliveries in flight: nothing when there were none.
fn report_deliveries(settled: &Settled) {
    match settled.finished {
        0 => {}
        1 => tracing::info!("stopping: the delivery in flight finished first"),
        n => tracing::info!("stopping: the {n} deliveries in flight finished first"),
    }
    if !settled.abandoned.is_empty() {
        tracing::warn!(
            "stopping: abandoned what was still in flight after {DELIVERY_GRACE:?}: {}",
            settled.abandoned.join(", ")
        );
    }
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
    systemd::reloading();
    let outcome = match Config::from_process(flags) {
        Ok(new) => {
            let old = session.config();
            if new.listen != old.listen
                || new.socket != old.socket
                || new.state_dir != old.state_dir
                || new.public_listen != old.public_listen
            {
                tracing::warn!(
                    "http.listen, http.public_listen, ipc.socket and store.dir take effect only \
                     after a restart"
                );
            }
            session.reload(new);
            tracing::info!(
                callback = %session.callback_url(),
                "SIGHUP: configuration reloaded"
            );
            systemd::status_line(session)
        }
        Err(e) => {
            tracing::error!("SIGHUP: reload refused, keeping the old configuration: {e}");
            format!(
                "reload failed, old configuration kept ({e}); {}",
                systemd::status_line(session)
            )
        }
    };
    systemd::ready(&outcome);
}

/// "cannot listen on ADDR", with the way out when the port is taken.
fn listen_error(addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!(
            "cannot listen on {addr} (http.listen): the port is in use, by another kited or \
             another program; pick another with --listen 127.0.0.1:PORT (or KITED_LISTEN, or \
             http.listen in the config file)"
        )
    } else {
        anyhow::Error::new(e).context(format!("cannot listen on {addr} (http.listen)"))
    }
}
