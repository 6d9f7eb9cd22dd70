//! `exec --on-new-token restart|signal:NAME`: kitectl stays as CMD's supervisor and, when a
//! login brings a token CMD does not have, restarts CMD with it or signals CMD to re-read it.
//!
//! Two threads feed one channel: one follows kited's `watch` subscription (and reconnects with
//! backoff when kited goes away), the other turns signals (SIGCHLD included) into messages. The
//! supervisor loop is the only code that touches the child; what to do about a token is
//! [`decide`], a pure function.

mod policy;

#[cfg(test)]
use policy::LAST_RETRY;
pub use policy::{asks_for_token, decide, exit_code, next_retry, OnNewToken, Step};
use policy::{restart_grace, signal_label, FIRST_RETRY};

use crate::cli::Target;
use crate::client::{Client, ClientError};
use crate::exit::finish;
use crate::exit::{note, Failure};
use kite_proto::message::{IssuedToken, Watch};
use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde_json::Value;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// What reaches the supervisor loop.
enum Input {
    /// A signal kitectl received (SIGCHLD: the child may have ended).
    Signal(i32),
    /// The name of a `watch` event.
    Event(String),
    /// Subscribed again after kited went away: events may have been missed.
    Resubscribed,
}

/// CMD and its arguments.
struct CommandLine {
    program: OsString,
    args: Vec<OsString>,
}

impl CommandLine {
    fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// Starts CMD in its own process group with the token in its environment.
    fn spawn(&self, token: &IssuedToken) -> Result<Child, Failure> {
        std::process::Command::new(&self.program)
            .args(&self.args)
            .env("KITE_API_KEY", &token.api_key)
            .env("KITE_ACCESS_TOKEN", &token.access_token)
            .process_group(0)
            .spawn()
            .map_err(|e| Failure::Local(format!("cannot run {}: {e}", self.name())))
    }
}

/// `exec --on-new-token restart|signal:NAME`: runs CMD under supervision and returns the exit
/// code (CMD's own once it ends by itself).
pub fn run(target: &Target, action: OnNewToken, wait: Option<u64>, command: &[OsString]) -> u8 {
    let outcome = start(target, action, wait, command).and_then(|mut s| s.supervise());
    match outcome {
        Ok(code) => code,
        Err(failure) => finish(Err(failure), &target.hint_flags()),
    }
}

/// Subscribes, gets the first token, starts CMD and the two feeding threads. Subscribing comes
/// first so that no login between the token and the subscription goes unnoticed.
fn start(
    target: &Target,
    action: OnNewToken,
    wait: Option<u64>,
    command: &[OsString],
) -> Result<Supervisor, Failure> {
    let Some((program, args)) = command.split_first() else {
        return Err(Failure::Local("exec needs a command to run".into()));
    };
    let command = CommandLine {
        program: program.clone(),
        args: args.to_vec(),
    };
    let path = target.socket_path();
    let subscription = subscribe(&path)?;
    let token = Client::connect(&target.socket_path())?.fetch_token(wait)?;
    let (feed, inputs) = mpsc::channel();
    // Before the spawn, so that an early exit's SIGCHLD is not missed.
    relay_signals(feed.clone())?;
    let child = command.spawn(&token)?;
    relay_watch(path, subscription, feed)?;
    Ok(Supervisor {
        target: target.clone(),
        action,
        command,
        child,
        token,
        restart: None,
        grace: restart_grace(),
        inputs,
    })
}

/// A `watch` subscription, confirmed, with no read timeout.
fn subscribe(path: &Path) -> Result<Client, ClientError> {
    let mut client = Client::connect(path)?;
    client.call(Watch {})?;
    client.set_read_timeout(None)?;
    Ok(client)
}

fn thread_failed(e: std::io::Error) -> Failure {
    Failure::Local(format!("cannot start a thread: {e}"))
}

/// Turns SIGCHLD, SIGINT, SIGTERM and SIGHUP into [`Input::Signal`]s.
fn relay_signals(feed: Sender<Input>) -> Result<(), Failure> {
    let mut signals = Signals::new([SIGCHLD, SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Failure::Local(format!("cannot handle signals: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if feed.send(Input::Signal(signal)).is_err() {
                    return;
                }
            }
        })
        .map_err(thread_failed)?;
    Ok(())
}

/// Follows the subscription, then each new one after kited went away and came back.
fn relay_watch(
    path: PathBuf,
    mut subscription: Client,
    feed: Sender<Input>,
) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || loop {
            if !relay_events(&mut subscription, &feed) {
                return;
            }
            note("kitectl: lost the connection to kited; the command keeps running, reconnecting");
            subscription = resubscribe(&path);
            note("kitectl: reconnected to kited");
            if feed.send(Input::Resubscribed).is_err() {
                return;
            }
        })
        .map_err(thread_failed)?;
    Ok(())
}

/// Sends each event's name until the subscription ends; false once nobody listens.
fn relay_events(subscription: &mut Client, feed: &Sender<Input>) -> bool {
    while let Ok(Some(line)) = subscription.read_line() {
        let Some(name) = event_name(&line) else {
            continue;
        };
        if feed.send(Input::Event(name)).is_err() {
            return false;
        }
    }
    true
}

/// The `"event"` of a `watch` line.
fn event_name(line: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(line).ok()?;
    value.get("event")?.as_str().map(str::to_string)
}

/// Subscribes again, waiting [`FIRST_RETRY`] doubling to [`LAST_RETRY`] between attempts.
fn resubscribe(path: &Path) -> Client {
    let mut delay = FIRST_RETRY;
    loop {
        std::thread::sleep(delay);
        if let Ok(subscription) = subscribe(path) {
            return subscription;
        }
        delay = next_retry(delay);
    }
}

/// A restart under way: SIGTERM sent, the child not reaped yet.
struct PendingRestart {
    /// The token the new child gets.
    next: IssuedToken,
    /// When to SIGKILL; `None` once done.
    kill_at: Option<Instant>,
    /// SIGINT or SIGTERM came meanwhile: end with the old child instead of starting a new one.
    stop: bool,
}

struct Supervisor {
    target: Target,
    action: OnNewToken,
    command: CommandLine,
    child: Child,
    /// The token the child was started with, or last signalled about.
    token: IssuedToken,
    restart: Option<PendingRestart>,
    grace: Duration,
    inputs: Receiver<Input>,
}

impl Supervisor {
    /// The loop: one input at a time until the child ends by itself.
    fn supervise(&mut self) -> Result<u8, Failure> {
        let gone = || Failure::Local("kitectl's signal and watch threads stopped".into());
        loop {
            let kill_at = self.restart.as_ref().and_then(|r| r.kill_at);
            let input = match kill_at {
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    match self.inputs.recv_timeout(left) {
                        Ok(input) => input,
                        Err(RecvTimeoutError::Timeout) => {
                            self.kill_after_grace();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return Err(gone()),
                    }
                }
                None => self.inputs.recv().map_err(|_| gone())?,
            };
            if let Some(code) = self.handle(input)? {
                return Ok(code);
            }
        }
    }

    /// Acts on one input; `Some(code)` when kitectl should exit with it.
    fn handle(&mut self, input: Input) -> Result<Option<u8>, Failure> {
        match input {
            Input::Signal(SIGCHLD) => return self.reap(),
            Input::Signal(signal) => self.pass_on(signal),
            Input::Event(name) if asks_for_token(&name) => self.check_token(),
            Input::Event(_) => {}
            Input::Resubscribed => self.check_token(),
        }
        Ok(None)
    }

    fn pid(&self) -> Pid {
        let raw = i32::try_from(self.child.id()).expect("a pid fits in an i32");
        Pid::from_raw(raw).expect("a child's pid is positive")
    }

    /// After SIGCHLD: if the child ended, start the next one (a restart) or end with its status.
    fn reap(&mut self) -> Result<Option<u8>, Failure> {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status,
            Ok(None) => return Ok(None),
            Err(e) => {
                let name = self.command.name();
                return Err(Failure::Local(format!("cannot wait for {name}: {e}")));
            }
        };
        match self.restart.take() {
            Some(restart) if !restart.stop => {
                self.child = self.command.spawn(&restart.next)?;
                self.token = restart.next;
                Ok(None)
            }
            _ => Ok(Some(exit_code(status))),
        }
    }

    /// Passes SIGINT, SIGTERM or SIGHUP on to the child's process group, as a terminal would.
    fn pass_on(&mut self, raw: i32) {
        let Some(signal) = Signal::from_named_raw(raw) else {
            return;
        };
        if raw == SIGINT || raw == SIGTERM {
            if let Some(restart) = self.restart.as_mut() {
                restart.stop = true;
            }
        }
        let _ = kill_process_group(self.pid(), signal);
    }

    /// The token kited serves now; `None` when it has none or does not answer.
    fn served_token(&self) -> Option<IssuedToken> {
        let mut client = Client::connect(&self.target.socket_path()).ok()?;
        client.fetch_token(None).ok()
    }

    /// Asks kited for the token and restarts or signals the child if it is a new one.
    fn check_token(&mut self) {
        let served = self.served_token();
        let have = match &self.restart {
            Some(restart) => &restart.next.access_token,
            None => &self.token.access_token,
        };
        let served_token = served.as_ref().map(|t| t.access_token.as_str());
        let step = decide(self.action, have, served_token);
        let Some(served) = served else {
            return;
        };
        match step {
            Step::Keep => {}
            Step::Restart => self.begin_restart(served),
            Step::Signal(signal) => {
                let label = signal_label(signal);
                note(&format!(
                    "kitectl: new token: sending {label} to {}",
                    self.command.name()
                ));
                let _ = kill_process(self.pid(), signal);
                self.token = served;
            }
        }
    }

    /// SIGTERM to the child's group; the child is started again once reaped.
    fn begin_restart(&mut self, next: IssuedToken) {
        if let Some(restart) = self.restart.as_mut() {
            // Already stopping: the new child gets the newest token.
            restart.next = next;
            return;
        }
        note(&format!(
            "kitectl: new token: restarting {}",
            self.command.name()
        ));
        let _ = kill_process_group(self.pid(), Signal::TERM);
        self.restart = Some(PendingRestart {
            next,
            kill_at: Some(Instant::now() + self.grace),
            stop: false,
        });
    }

    /// The grace period passed and the child still runs: SIGKILL its group.
    fn kill_after_grace(&mut self) {
        let Some(restart) = self.restart.as_mut() else {
            return;
        };
        restart.kill_at = None;
        note(&format!(
            "kitectl: {} did not exit within {:?} of SIGTERM: killing it",
            self.command.name(),
            self.grace
        ));
        let _ = kill_process_group(self.pid(), Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn actions_parse() {
        assert_eq!(OnNewToken::parse("none"), Ok(OnNewToken::None));
        assert_eq!(OnNewToken::parse("restart"), Ok(OnNewToken::Restart));
        assert_eq!(OnNewToken::parse("RESTART"), Ok(OnNewToken::Restart));
        for text in ["signal:HUP", "signal:hup", "signal:SIGHUP", "Signal:SigHup"] {
            assert_eq!(
                OnNewToken::parse(text),
                Ok(OnNewToken::Signal(Signal::HUP)),
                "{text}"
            );
        }
        assert_eq!(
            OnNewToken::parse("signal:USR1"),
            Ok(OnNewToken::Signal(Signal::USR1))
        );
        for bad in [
            "",
            "reboot",
            "signal:",
            "signal:FOO",
            "signal:KILL",
            "signal",
            "hup",
        ] {
            let err = OnNewToken::parse(bad).unwrap_err();
            assert!(!err.contains('\n'), "{bad}: {err}");
        }
    }

    #[test]
    fn only_a_different_served_token_moves_the_child() {
        let usr1 = OnNewToken::Signal(Signal::USR1);
        assert_eq!(decide(OnNewToken::Restart, "a", Some("b")), Step::Restart);
        assert_eq!(decide(usr1, "a", Some("b")), Step::Signal(Signal::USR1));
        for action in [OnNewToken::Restart, usr1, OnNewToken::None] {
            assert_eq!(decide(action, "a", Some("a")), Step::Keep, "{action:?}");
            assert_eq!(decide(action, "a", None), Step::Keep, "{action:?}");
        }
        assert_eq!(decide(OnNewToken::None, "a", Some("b")), Step::Keep);
    }

    #[test]
    fn only_logins_ask_for_the_token() {
        assert!(asks_for_token("token_new"));
        for event in [
            "token_expiring",
            "token_expired",
            "token_invalidated",
            "login_required",
            "order_update",
            "env_file_failed",
        ] {
            assert!(!asks_for_token(event), "{event}");
        }
    }

    #[test]
    fn retries_double_up_to_half_a_minute() {
        let mut delay = FIRST_RETRY;
        let mut waits = vec![delay];
        for _ in 0..12 {
            delay = next_retry(delay);
            waits.push(delay);
        }
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[4], Duration::from_millis(1600));
        assert_eq!(*waits.last().unwrap(), LAST_RETRY);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn event_names() {
        assert_eq!(
            event_name(br#"{"event":"token_new","at":"x"}"#).as_deref(),
            Some("token_new")
        );
        assert_eq!(event_name(br#"{"ok":true}"#), None);
        assert_eq!(event_name(b"not json"), None);
    }
}
