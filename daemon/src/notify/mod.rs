//! Tells the person: desktop notifications (with a "Log in" action) and `notify.command`; the
//! folder holds the other ways out (the env file, phone push, Redis).
//!
//! Each event is delivered on its own task, so a notification server that never answers (or a
//! `notify.command` that hangs) holds up nothing else: not the next event, not the socket.

pub(crate) mod env_file;
pub(crate) mod push;
pub(crate) mod redis_sink;

use crate::session::Session;
use kite_proto::{Event, EventKind};
use notify_rust::{Notification, NotificationResponse, Timeout, Urgency};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// How long a D-Bus notification server gets to accept a notification: a wedged bus must not
/// hold anything up.
const DBUS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a "Log in" button stays clickable: until well past market open. A new token ends
/// the wait earlier (and closes the notification).
const ACTION_WAIT: Duration = Duration::from_secs(6 * 3600);
/// The action key of the "Log in" button.
const LOGIN_ACTION: &str = "login";

/// Delivers every event from the bus until `shutdown`.
pub async fn run(session: Session, shutdown: CancellationToken) {
    let mut events = session.events().subscribe("the notifier");
    // One warning per outage of the notification service, not one per event.
    let bus_warned = Arc::new(AtomicBool::new(false));
    loop {
        let Some(event) = events.next_until(&shutdown).await else {
            return;
        };
        let config = session.config();
        let name = event.kind.name();
        if !config.notify.command.is_empty() {
            session.in_flight().spawn(
                format!("notify.command for {name}"),
                run_command(
                    config.notify.command.clone(),
                    event.clone(),
                    config.command_timeout(),
                ),
            );
        }
        if config.notify.desktop && wants_desktop(&event.kind) {
            session.in_flight().spawn(
                format!("desktop notification for {name}"),
                deliver_desktop(event, session.clone(), shutdown.clone(), bus_warned.clone()),
            );
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
    ) || token_not_ready(kind)
}

/// A `market_not_ready` whose `token` check failed: a login is what fixes it.
fn token_not_ready(kind: &EventKind) -> bool {
    matches!(kind, EventKind::MarketNotReady { checks }
        if checks.iter().any(|c| c.name == "token" && !c.ok))
}

/// Shows `event` on the desktop and, where it offers one, serves its "Log in" button. Showing
/// is the delivery a stop waits for; the wait for a click ends at once when kited stops.
async fn deliver_desktop(
    event: Event,
    session: Session,
    shutdown: CancellationToken,
    bus_warned: Arc<AtomicBool>,
) {
    match show_desktop(&event).await {
        Ok(handle) => {
            if bus_warned.swap(false, Ordering::Relaxed) {
                tracing::info!("desktop notifications work again");
            }
            if offers_login(&event.kind) {
                await_login_click(handle, session, shutdown).await;
            }
        }
        Err(message) => {
            if !bus_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "desktop notifications unavailable ({message}); carrying on without them"
                );
            } else {
                tracing::debug!("desktop notification not shown: {message}");
            }
        }
    }
}

async fn show_desktop(event: &Event) -> Result<notify_rust::NotificationHandle, String> {
    let mut notification = Notification::new();
    notification
        .appname("kited")
        .summary(&event.sentence())
        .icon("dialog-password");
    match &event.kind {
        EventKind::TokenNew { .. } => {
            notification
                .body("Programs can now get it with `kitectl get-token`.")
                .timeout(Timeout::Default);
        }
        EventKind::MarketReady { .. } => {
            notification
                .body("Token, Kite, network and clock are fine for 09:15.")
                .timeout(Timeout::Default);
        }
        kind @ EventKind::MarketNotReady { .. } if !token_not_ready(kind) => {
            notification
                .body("Run `kitectl doctor` to see what to fix before 09:15.")
                .urgency(Urgency::Critical);
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

/// Waits for the "Log in" button and opens a fresh login URL. Gives up (and closes the
/// notification) when a usable token arrives meanwhile: the button is not needed any more.
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
    let mut tokens = session.watch_token();
    tokens.borrow_and_update();
    let superseded = async {
        loop {
            if tokens.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            let usable = tokens
                .borrow_and_update()
                .as_deref()
                .is_some_and(|t| session.state_of(t).is_usable());
            if usable {
                return;
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => return,
        _ = tokio::time::sleep(ACTION_WAIT) => return,
        _ = superseded => {
            let _ = tokio::time::timeout(DBUS_TIMEOUT, handle.close_async()).await;
            return;
        }
        _ = wait => {}
    }
    if clicked {
        open_login(&session).await;
    }
}

/// The variables that may hold a secret kited reads at start (the api secret, the channels'
/// tokens, the Redis password). No command kited runs inherits them: a notification script or
/// a browser has no use for them, and would hand them on to everything it starts.
const SECRET_ENV_VARS: [&str; 4] = [
    "KITE_API_SECRET",
    crate::config::sinks::REDIS_PASSWORD_ENV,
    crate::config::push::TELEGRAM_TOKEN_ENV,
    crate::config::push::NTFY_TOKEN_ENV,
];

/// Removing a list of variables from a child's environment.
trait EnvsRemoved {
    fn envs_removed(&mut self, names: impl IntoIterator<Item = &'static str>) -> &mut Self;
}

impl EnvsRemoved for tokio::process::Command {
    fn envs_removed(&mut self, names: impl IntoIterator<Item = &'static str>) -> &mut Self {
        for name in names {
            self.env_remove(name);
        }
        self
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
    let config = session.config();
    let argv = config.notify.open_command.clone();
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .arg(&url)
        .envs_removed(SECRET_ENV_VARS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            tracing::info!("opened the Kite login page with {program}");
            // A browser may stay in the foreground of its launcher; leave it running.
            let _ = tokio::time::timeout(config.command_timeout(), child.wait()).await;
        }
        Err(e) => tracing::warn!("cannot run {program} to open the login page: {e}"),
    }
}

/// Runs `notify.command` with the event as JSON on stdin and `KITED_EVENT` set, in a process
/// group of its own; after `timeout` the whole group is killed (a script's children too).
pub async fn run_command(argv: Vec<String>, event: Event, timeout: Duration) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .env("KITED_EVENT", event.kind.name())
        .envs_removed(SECRET_ENV_VARS)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("notify.command {program} could not start: {e}");
            return;
        }
    };
    // Until the command is reaped, its whole group dies with this future: after `timeout`, and
    // when a stop abandons the delivery.
    let mut group = ProcessGroup(
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32)),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    if let Some(mut stdin) = child.stdin.take() {
        let line = event.to_line();
        // A command that exits without reading its input is fine (EPIPE is ignored).
        let _ = tokio::time::timeout_at(deadline, stdin.write_all(line.as_bytes())).await;
    }
    match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) if !status.success() => {
            tracing::warn!(
                "notify.command {program} exited with {status} for {}",
                event.kind.name()
            )
        }
        Ok(_) => {}
        Err(_) => {
            tracing::warn!("notify.command {program} ran over {timeout:?}; killed it");
            group.kill();
            let _ = child.kill().await;
        }
    }
    group.reaped();
}

/// A command's process group, killed when dropped before the command was reaped.
struct ProcessGroup(Option<rustix::process::Pid>);

impl ProcessGroup {
    /// The command ended by itself: whatever it left running in its group is its own business.
    fn reaped(&mut self) {
        self.0 = None;
    }

    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hanging_commands_are_killed_with_their_children() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 600 & echo $! > {0}; echo $$ >> {0}; wait",
            pids.display()
        );
        let event = Event {
            kind: EventKind::LoginRequired { login_url: None },
            at: "2026-11-23T08:45:00+05:30".into(),
        };
        let started = std::time::Instant::now();
        run_command(
            vec!["sh".into(), "-c".into(), script],
            event,
            Duration::from_millis(300),
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = std::fs::read_to_string(&pids).unwrap();
        for pid in text.split_whitespace() {
            let pid: i32 = pid.parse().unwrap();
            // Killed processes may linger as zombies until reaped; a zombie is dead.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let status = std::fs::read_to_string(format!("/proc/{pid}/stat"));
                let dead = match status {
                    Err(_) => true,
                    Ok(stat) => stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|rest| rest.trim_start().starts_with('Z')),
                };
                if dead {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "process {pid} survived"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
