//! A real `redis-server` (Debian's) for the Redis sink tests: its own temp dir, config and
//! ephemeral port, no persistence (a restart comes back empty, as a Redis without a disk does),
//! optional ACL users and TLS with a throwaway CA made by `openssl`. Dropping it kills the
//! process. [`Resp`] is a raw RESP client over TCP for plain servers (GET, TTL, SUBSCRIBE);
//! [`RedisServer::cli`] runs `redis-cli` (which comes with the package) for TLS.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{free_port, POLL_INTERVAL};

/// How long redis-server may take to answer PING after it starts: milliseconds in practice.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// Read timeout of the raw client; a SUBSCRIBE read uses its own.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The redis-server binary: `$KITED_REDIS_SERVER` or Debian's `/usr/bin/redis-server`.
pub fn server_bin() -> PathBuf {
    std::env::var_os("KITED_REDIS_SERVER")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// `redis-cli` beside the server.
pub fn cli_bin() -> PathBuf {
    server_bin().with_file_name("redis-cli")
}

/// How to start a [`RedisServer`].
#[derive(Clone, Default)]
pub struct RedisOptions {
    /// `user ...` lines (redis.conf's ACL syntax), after the default user's line.
    pub users: Vec<String>,
    /// The default user's password (`requirepass`); `None` leaves it open.
    pub default_password: Option<String>,
    /// Serve TLS only (`tls-port`), with a certificate for 127.0.0.1 from a fresh CA.
    pub tls: bool,
}

/// A running redis-server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    options: RedisOptions,
    conf: PathBuf,
    // Last: the process is gone before its directory is removed.
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(options: RedisOptions) -> RedisServer {
        let server = RedisServer::new(options);
        let mut server = server;
        server.launch();
        server
    }

    /// Writes the config (and the TLS files) for a port without starting anything: for tests
    /// in which Redis comes up only later.
    pub fn new(options: RedisOptions) -> RedisServer {
        let bin = server_bin();
        assert!(
            bin.is_file(),
            "the Redis sink tests need redis-server at {}: install it with \
             `apt-get install -y redis-server` (or set KITED_REDIS_SERVER)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("kited-redis-")
            .tempdir()
            .expect("cannot create a temp dir for redis-server");
        let port = free_port();
        let mut conf = format!(
            "bind 127.0.0.1\nprotected-mode no\ndaemonize no\nsave \"\"\nappendonly no\n\
             dir {dir}\nlogfile {dir}/redis.log\n",
            dir = dir.path().display()
        );
        if options.tls {
            make_certificates(dir.path());
            conf.push_str(&format!(
                "port 0\ntls-port {port}\ntls-cert-file {d}/server.crt\ntls-key-file {d}/server.key\n\
                 tls-ca-cert-file {d}/ca.crt\ntls-auth-clients no\n",
                d = dir.path().display()
            ));
        } else {
            conf.push_str(&format!("port {port}\n"));
        }
        match &options.default_password {
            Some(pw) => conf.push_str(&format!("user default on >{pw} ~* &* +@all\n")),
            None => conf.push_str("user default on nopass ~* &* +@all\n"),
        }
        for user in &options.users {
            conf.push_str(user);
            conf.push('\n');
        }
        let path = dir.path().join("redis.conf");
        fs::write(&path, conf).expect("cannot write redis.conf");
        RedisServer {
            child: None,
            port,
            options,
            conf: path,
            dir,
        }
    }

    /// Starts the process (again, after [`RedisServer::kill`]) and waits until it answers.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = File::create(self.dir.path().join("stdout.log")).expect("cannot create a log");
        let child = Command::new(server_bin())
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot dup the log"))
            .stderr(log)
            .spawn()
            .expect("cannot start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let out = self.cli(&["PING"]);
            if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                return;
            }
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("redis-server exited ({status}):\n{}", self.log());
            }
            if Instant::now() >= deadline {
                panic!("redis-server did not answer PING:\n{}", self.log());
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Kills the process (SIGKILL) and waits for it: what a crash or a container restart does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0` or `rediss://...`.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    /// The test CA's certificate (TLS servers only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("redis.log"), read("stdout.log"))
    }

    /// Runs `redis-cli ARGS` against this server as the default user (TLS and password handled).
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut command = Command::new(cli_bin());
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.options.tls {
            command.arg("--tls").arg("--cacert").arg(self.ca_file());
        }
        if let Some(pw) = &self.options.default_password {
            command.env("REDISCLI_AUTH", pw);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run redis-cli")
    }

    /// A raw client as the default user (plain servers only).
    pub fn client(&self) -> Resp {
        assert!(!self.options.tls, "the raw client speaks plain TCP only");
        let mut client = Resp::connect(self.port);
        if let Some(pw) = &self.options.default_password {
            let answer = client.command(&["AUTH", pw]);
            assert_eq!(answer, Value::Simple("OK".into()), "AUTH");
        }
        client
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh CA and a server certificate for 127.0.0.1/localhost signed by it, in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the rediss:// test needs the openssl command (apt-get install -y openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=kited test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("cannot write the certificate extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    // redis-server reads the key as itself; the files stay in the private temp dir.
    let _ = Command::new("chmod")
        .args(["644", "server.key"])
        .current_dir(dir)
        .status();
}

/// One RESP value, as a RESP2 server sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The text of a bulk or simple string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Simple(s) | Value::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// A raw RESP2 client over TCP: commands as arrays of bulk strings, replies parsed by hand.
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Resp {
    pub fn connect(port: u16) -> Resp {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("cannot connect to redis");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("cannot set a read timeout");
        let writer = stream.try_clone().expect("cannot clone the stream");
        Resp {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&str]) -> Value {
        self.send(args);
        self.read().expect("no reply from redis")
    }

    pub fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.writer
            .write_all(out.as_bytes())
            .expect("cannot write to redis");
    }

    /// The next value, or `None` when nothing came within `timeout`.
    pub fn read_within(&mut self, timeout: Duration) -> Option<Value> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .expect("cannot set a read timeout");
        let value = self.read();
        self.reader
            .get_ref()
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("cannot set a read timeout");
        value
    }

    fn read(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        Some(match kind {
            "+" => Value::Simple(rest.into()),
            "-" => Value::Error(rest.into()),
            ":" => Value::Integer(rest.parse().expect("a RESP integer")),
            "$" => {
                let len: i64 = rest.parse().expect("a RESP bulk length");
                if len < 0 {
                    return Some(Value::Bulk(None));
                }
                let mut data = vec![0; len as usize + 2];
                self.reader.read_exact(&mut data).ok()?;
                data.truncate(len as usize);
                Value::Bulk(Some(String::from_utf8(data).expect("UTF-8 bulk")))
            }
            "*" => {
                let len: i64 = rest.parse().expect("a RESP array length");
                if len < 0 {
                    return Some(Value::Array(None));
                }
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(self.read()?);
                }
                Value::Array(Some(items))
            }
            other => panic!("not RESP: {other}{rest}"),
        })
    }
}
