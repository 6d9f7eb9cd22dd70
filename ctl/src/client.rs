//! The connection to kited: connect, send one request line, read one answer line.

use kite_proto::message::{GetToken, IssuedToken, Status};
use kite_proto::socket_trust::{self, Distrust};
use kite_proto::TokenStatus;
use kite_proto::{exit, parse_answer, Call, FrameError, LineBuffer, WireError};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long connecting, writing, and waiting for an ordinary answer may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection to the daemon could not be made.
#[derive(Debug)]
pub enum Unreachable {
    /// No socket file (or no directory for it).
    NoSocket,
    /// A socket file, but nobody listening on it (a daemon that died without cleaning up).
    Refused,
    /// The daemon's accept queue stayed full for [`TIMEOUT`]: it is alive but stuck.
    Busy,
    /// Not allowed to connect (another user's socket, or a directory without access).
    Denied,
    /// Anything else the kernel said.
    Other(io::Error),
}

/// Everything that can go wrong between kitectl and kited.
#[derive(Debug)]
pub enum ClientError {
    /// No connection could be made.
    Unreachable { path: PathBuf, why: Unreachable },
    /// No (complete) answer within the time allowed.
    Timeout { path: PathBuf, after: Duration },
    /// The daemon hung up before answering.
    Closed { path: PathBuf },
    /// The connection broke while talking.
    Io { path: PathBuf, source: io::Error },
    /// The daemon answered something kitectl does not understand.
    Protocol(String),
    /// The daemon answered `{"ok":false,"error":{...}}`.
    Daemon(WireError),
    /// The socket, its directory or the process behind it is not this user's (or root's).
    Untrusted(Distrust),
}

const START_HINT: &str = "start it with `systemctl --user start kited` or `kited`";

/// How to start the daemon that should own `path`: a default-location socket of another profile
/// belongs to the `kited@PROFILE` instance.
fn start_hint(path: &std::path::Path) -> String {
    let profile = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let in_runtime_dir = path.parent() == Some(kite_proto::socket_path::runtime_dir().as_path());
    if in_runtime_dir && !profile.is_empty() && profile != kite_proto::socket_path::DEFAULT_PROFILE
    {
        format!(
            "start it with `systemctl --user start kited@{profile}` or `kited --profile {profile}`"
        )
    } else {
        START_HINT.to_string()
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { path, why } => {
                let hint = start_hint(path);
                let path = path.display();
                match why {
                    Unreachable::NoSocket => {
                        write!(f, "kited is not running (no socket at {path}): {hint}")
                    }
                    Unreachable::Refused => write!(
                        f,
                        "kited is not running (nothing listening on {path}): {hint}"
                    ),
                    Unreachable::Busy => write!(
                        f,
                        "kited is not answering (connecting to {path} timed out): \
                         check `systemctl --user status kited`"
                    ),
                    Unreachable::Denied => write!(
                        f,
                        "cannot connect to kited at {path}: permission denied \
                         (is it another user's daemon?)"
                    ),
                    Unreachable::Other(e) => write!(f, "cannot connect to kited at {path}: {e}"),
                }
            }
            ClientError::Timeout { path, after } => write!(
                f,
                "kited did not answer within {}s ({}): check `systemctl --user status kited`",
                after.as_secs(),
                path.display()
            ),
            ClientError::Closed { path } => write!(
                f,
                "kited closed the connection without answering ({})",
                path.display()
            ),
            ClientError::Io { path, source } => {
                write!(f, "lost the connection to kited at {}: {source}", path.display())
            }
            ClientError::Protocol(message) => write!(
                f,
                "unexpected answer from kited: {message} (is kitectl {} the same version as kited?)",
                kite_proto::VERSION
            ),
            ClientError::Daemon(e) => f.write_str(&e.message),
            ClientError::Untrusted(why) => write!(
                f,
                "refusing to talk to kited: {why}; remove it, or set XDG_RUNTIME_DIR to a \
                 private directory"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The process exit code this error ends with.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Closed { .. }
            | ClientError::Io { .. }
            | ClientError::Untrusted(_) => exit::UNREACHABLE,
            ClientError::Protocol(_) => exit::FAILURE,
            ClientError::Daemon(e) => e.kind.exit_code(),
        }
    }
}

/// Classifies a failed `connect(2)`.
fn unreachable(e: io::Error) -> Unreachable {
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Unreachable::NoSocket,
        Some(rustix::io::Errno::CONNREFUSED) => Unreachable::Refused,
        Some(rustix::io::Errno::AGAIN | rustix::io::Errno::TIMEDOUT) => Unreachable::Busy,
        Some(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => Unreachable::Denied,
        _ => Unreachable::Other(e),
    }
}

/// One connection to the daemon.
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    frames: LineBuffer,
    /// The read timeout in force, for the error message.
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to the socket at `path`, giving up after [`TIMEOUT`] when the daemon is stuck.
    /// The socket's directory, the socket file and the daemon's uid must all be this user's (or
    /// root's): a socket another user planted must never receive a request token.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        socket_trust::check_socket_path(path).map_err(ClientError::Untrusted)?;
        let fail = |e: io::Error| ClientError::Unreachable {
            path: path.to_path_buf(),
            why: unreachable(e),
        };
        let stream = kite_proto::socket_path::connect_bounded(path, TIMEOUT).map_err(fail)?;
        socket_trust::check_peer(&stream, path).map_err(ClientError::Untrusted)?;
        Ok(Client {
            stream,
            path: path.to_path_buf(),
            frames: LineBuffer::new(),
            timeout: Some(TIMEOUT),
        })
    }

    /// The token (waiting up to `wait` seconds for one when asked), with the read timeout
    /// stretched to cover the wait.
    pub fn fetch_token(&mut self, wait: Option<u64>) -> Result<IssuedToken, ClientError> {
        if wait.is_some() {
            self.set_read_timeout(Some(answer_timeout(wait)))?;
        }
        self.call(GetToken { wait_secs: wait })
    }

    /// The token's status.
    pub fn fetch_status(&mut self) -> Result<TokenStatus, ClientError> {
        Ok(self.call(Status {})?.status)
    }

    /// The process id of the daemon on the other end (from `SO_PEERCRED`), to signal it.
    pub fn peer_pid(&self) -> Option<rustix::process::Pid> {
        rustix::net::sockopt::socket_peercred(&self.stream)
            .ok()
            .map(|creds| creds.pid)
    }

    /// Sets how long to wait for each answer; `None` waits for ever (`watch`).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|source| self.io(source))?;
        self.timeout = timeout;
        Ok(())
    }

    fn io(&self, source: io::Error) -> ClientError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                path: self.path.clone(),
                after: self.timeout.unwrap_or(TIMEOUT),
            },
            _ => ClientError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }

    /// Sends `request` and returns the daemon's answer, of the request's own answer type; an
    /// `{"ok":false}` answer becomes [`ClientError::Daemon`].
    pub fn call<C: Call>(&mut self, request: C) -> Result<C::Answer, ClientError> {
        let line = request.into().to_line();
        self.stream
            .write_all(line.as_bytes())
            .map_err(|source| self.io(source))?;
        let Some(answer) = self.read_line()? else {
            return Err(ClientError::Closed {
                path: self.path.clone(),
            });
        };
        match parse_answer::<C::Answer>(&answer) {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(ClientError::Daemon(error)),
            Err(message) => Err(ClientError::Protocol(message)),
        }
    }

    /// The next line from the daemon, or `None` once it hung up. Lines are capped at
    /// [`kite_proto::MAX_LINE`].
    pub fn read_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let mut buf = [0u8; 8192];
        loop {
            match self.frames.next_line() {
                Some(Ok(line)) => return Ok(Some(line)),
                Some(Err(FrameError::TooLong)) => {
                    return Err(ClientError::Protocol(format!(
                        "an answer longer than {} bytes",
                        kite_proto::MAX_LINE
                    )))
                }
                None => {}
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.frames.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
    }
}

/// The socket read timeout for a request that may block `wait` seconds in the daemon.
pub fn answer_timeout(wait: Option<u64>) -> Duration {
    match wait {
        Some(secs) => Duration::from_secs(secs.saturating_add(TIMEOUT.as_secs())),
        None => TIMEOUT,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn start_hint_names_the_profile_instance() {
        let dir = kite_proto::socket_path::runtime_dir();
        assert!(start_hint(&dir.join("prod.sock")).contains("kited@prod"));
        assert!(!start_hint(&dir.join("default.sock")).contains('@'));
        assert!(!start_hint(std::path::Path::new("/elsewhere/x.sock")).contains('@'));
    }
    use kite_proto::message::{GetToken, Ping, Status};
    use kite_proto::ErrorKind;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// A fake daemon: for each accepted connection, answers each request line with the next
    /// canned line (`None` = hang up instead of answering). Returns the socket path and a handle
    /// yielding the request lines it saw.
    pub fn fake_daemon(
        dir: &Path,
        answers: Vec<Option<String>>,
    ) -> (PathBuf, thread::JoinHandle<Vec<String>>) {
        let path = dir.join("kited.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            let mut seen = Vec::new();
            for answer in answers {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                seen.push(line.trim_end().to_string());
                match answer {
                    Some(answer) => writer.write_all(answer.as_bytes()).unwrap(),
                    None => break,
                }
            }
            seen
        });
        (path, handle)
    }

    /// A scratch directory removed when the test ends.
    pub struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub fn temp_dir(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("kitectl-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    #[test]
    fn missing_socket_is_unreachable() {
        let dir = temp_dir("missing");
        let err = Client::connect(&dir.join("nope.sock"))
            .err()
            .expect("connect must fail");
        assert_eq!(err.exit_code(), exit::UNREACHABLE);
        let text = err.to_string();
        assert!(
            text.starts_with("kited is not running (no socket at "),
            "{text}"
        );
        assert!(text.contains("systemctl --user start kited"), "{text}");
    }

    #[test]
    fn stale_socket_is_unreachable() {
        let dir = temp_dir("stale");
        let path = dir.join("stale.sock");
        drop(UnixListener::bind(&path).unwrap());
        let err = Client::connect(&path).err().expect("connect must fail");
        assert!(matches!(
            err,
            ClientError::Unreachable {
                why: Unreachable::Refused,
                ..
            }
        ));
        assert_eq!(err.exit_code(), exit::UNREACHABLE);
    }

    #[test]
    fn round_trip_and_daemon_errors() {
        let dir = temp_dir("roundtrip");
        let (path, daemon) = fake_daemon(
            &dir,
            vec![
                Some("{\"ok\":true,\"version\":\"9.9.9\"}\n".into()),
                Some(
                    "{\"ok\":false,\"error\":{\"kind\":\"login_required\",\"message\":\"log in\"}}\n"
                        .into(),
                ),
                Some("not json\n".into()),
            ],
        );
        let mut client = Client::connect(&path).unwrap();
        assert_eq!(client.call(Ping {}).unwrap().version, "9.9.9");
        match client.call(GetToken { wait_secs: None }) {
            Err(ClientError::Daemon(e)) => assert_eq!(e.kind, ErrorKind::LoginRequired),
            other => panic!("{other:?}"),
        }
        let err = client.call(Status {}).unwrap_err();
        assert_eq!(err.exit_code(), exit::FAILURE);
        assert_eq!(
            daemon.join().unwrap(),
            vec![
                r#"{"op":"ping"}"#,
                r#"{"op":"get_token"}"#,
                r#"{"op":"status"}"#
            ]
        );
    }

    #[test]
    fn hang_up_without_answer_is_unreachable() {
        let dir = temp_dir("hangup");
        let (path, daemon) = fake_daemon(&dir, vec![None]);
        let mut client = Client::connect(&path).unwrap();
        let err = client.call(Ping {}).unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
        assert_eq!(err.exit_code(), exit::UNREACHABLE);
        daemon.join().unwrap();
    }

    #[test]
    fn silence_times_out() {
        let dir = temp_dir("silence");
        let path = dir.join("quiet.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut client = Client::connect(&path).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let err = client.call(Ping {}).unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert_eq!(err.exit_code(), exit::UNREACHABLE);
        drop(listener);
    }

    #[test]
    fn over_long_answer_is_a_protocol_error() {
        let dir = temp_dir("long");
        let long = format!(
            "{{\"ok\":true,\"x\":\"{}\"}}\n",
            "x".repeat(kite_proto::MAX_LINE)
        );
        let (path, daemon) = fake_daemon(&dir, vec![Some(long)]);
        let mut client = Client::connect(&path).unwrap();
        let err = client.call(Ping {}).unwrap_err();
        assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
        daemon.join().unwrap();
    }
}
