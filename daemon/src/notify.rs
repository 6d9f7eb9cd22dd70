//! Tells the person: desktop notifications (with a "Log in" action) and `notify.command`.

use crate::events::describe;
use crate::session::Session;
use kite_proto::{Event, EventKind};
use notify_rust::{Notification, NotificationResponse, Timeout, Urgency};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// How long a D-Bus notification server gets to accept a notification: a wedged bus must not
/// hold anything up.
const DBUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a "Log in" button stays clickable: until well past market open.
const ACTION_WAIT: Duration = Duration::from_secs(6 * 3600);
/// How long `notify.command` may run before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// The action key of the "Log in" button.
const LOGIN_ACTION: &str = "login";

/// Delivers every event from the bus until `shutdown`.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let mut events = session.events().subscribe();
    let mut bus_warned = false;
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = events.recv() => match event {
                Ok(event) => event,
                Err(RecvError::Lagged(n)) => { tracing::warn!("notifier missed {n} events"); continue }
                Err(RecvError::Closed) => return,
            },
        };
        let config = session.config();
        if !config.notify.command.is_empty() {
            tokio::spawn(run_command(config.notify.command.clone(), event.clone()));
        }
        if config.notify.desktop && wants_desktop(&event.kind) {
            match show_desktop(&event).await {
                Ok(handle) => {
                    bus_warned = false;
                    if offers_login(&event.kind) {
                        tokio::spawn(await_login_click(handle, session.clone(), shutdown.clone()));
                    }
                }
                Err(message) if !bus_warned => {
                    bus_warned = true;
                    tracing::warn!(
                        "desktop notifications unavailable ({message}); carrying on without them"
                    );
                }
                Err(_) => {}
            }
        }
    }
}

fn wants_desktop(kind: &EventKind) -> bool {
    !matches!(kind, EventKind::OrderUpdate { .. })
}

fn offers_login(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TokenExpiring { .. }
            | EventKind::TokenExpired { .. }
            | EventKind::TokenInvalidated { .. }
            | EventKind::LoginRequired { .. }
    )
}

async fn show_desktop(event: &Event) -> Result<notify_rust::NotificationHandle, String> {
    let mut notification = Notification::new();
    notification
        .appname("kited")
        .summary(&describe(&event.kind))
        .icon("dialog-password");
    match &event.kind {
        EventKind::TokenNew { .. } => {
            notification
                .body("Programs can run `kitectl get-token`.")
                .timeout(Timeout::Default);
        }
        kind => {
            notification
                .body("Kite needs a fresh login before programs can trade.")
                .action(LOGIN_ACTION, "Log in")
                .action("default", "Log in")
                .urgency(if matches!(kind, EventKind::TokenExpiring { .. }) {
                    Urgency::Normal
                } else {
                    Urgency::Critical
                });
        }
    }
    match tokio::time::timeout(DBUS_TIMEOUT, notification.show_async()).await {
        Ok(Ok(handle)) => Ok(handle),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the notification server did not answer within {DBUS_TIMEOUT:?}"
        )),
    }
}

/// Waits for the "Log in" button and opens a fresh login URL.
async fn await_login_click(
    handle: notify_rust::NotificationHandle,
    session: Session,
    shutdown: CancellationToken,
) {
    let mut clicked = false;
    let wait = handle.wait_for_action_async(|response| {
        clicked = match response {
            NotificationResponse::Default => true,
            NotificationResponse::Action(key) => key == LOGIN_ACTION || key == "default",
            _ => false,
        };
    });
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(ACTION_WAIT) => return,
        _ = wait => {}
    }
    if clicked {
        open_login(&session).await;
    }
}

/// Opens a fresh login URL with `notify.open_command` (default `xdg-open`).
pub async fn open_login(session: &Session) {
    let url = match session.login_url() {
        Ok((url, _)) => url,
        Err(e) => {
            tracing::warn!("cannot open a login page: {e}");
            return;
        }
    };
    let argv = session.config().notify.open_command.clone();
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .arg(&url)
        .env_remove("KITE_API_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tracing::info!("opened the Kite login page with {program}");
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await;
        }
        Err(e) => tracing::warn!("cannot run {program} to open the login page: {e}"),
    }
}

/// Runs `notify.command` with the event as JSON on stdin and `KITED_EVENT` set; kills it after
/// [`COMMAND_TIMEOUT`].
pub async fn run_command(argv: Vec<String>, event: Event) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("KITED_EVENT", event.kind.name())
        .env_remove("KITE_API_SECRET")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("notify.command {program} could not start: {e}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let line = event.to_line();
        let _ = tokio::time::timeout(COMMAND_TIMEOUT, stdin.write_all(line.as_bytes())).await;
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
        Ok(Ok(status)) if !status.success() => {
            tracing::warn!(
                "notify.command {program} exited with {status} for {}",
                event.kind.name()
            )
        }
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("notify.command {program} ran over {COMMAND_TIMEOUT:?}; killed it");
            let _ = child.kill().await;
        }
    }
}
