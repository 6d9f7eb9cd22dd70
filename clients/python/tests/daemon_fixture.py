"""Real processes for the client tests: kite-sim, kited and redis-server, each in its own temp dir.

Standard library only, so any test (or benchmark) can use it before anything is installed:

    sim = Sim.start()                    # kite-sim on an ephemeral port
    daemon = Kited.start(sim)            # kited with private XDG dirs, the sim's redirect set to it
    daemon.login()                       # the browser login: kited's URL -> sim -> kited callback
    ...
    daemon.stop(); sim.stop()

Binaries come from ``$KITED_BIN_DIR`` (default ``<repo>/target/debug``). A missing program skips
the test with the reason, except under ``CI=true``, where it fails: CI must run everything.
Readiness is polled with a deadline, never slept for; every process is killed in ``stop()``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[3]
#: How long a process may take to become ready.
START_DEADLINE = 15.0
#: How often readiness (and :func:`eventually`) is re-checked.
POLL_SECS = 0.01
#: How long a process may take to exit after SIGTERM before it is killed.
TERM_DEADLINE = 5.0


def bin_dir() -> Path:
    """Where kited, kitectl and kite-sim are: ``$KITED_BIN_DIR`` or ``<repo>/target/debug``."""
    return Path(os.environ.get("KITED_BIN_DIR") or REPO / "target" / "debug")


def require(program: str) -> str:
    """The path of ``program`` (a workspace binary, else looked up on PATH). When it is missing:
    skips the test, or fails it under ``CI=true``."""
    candidate = bin_dir() / program
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(program)
    if found and program not in ("kited", "kitectl", "kite-sim"):
        return found
    reason = (
        f"{program} is missing (looked in {bin_dir()} and PATH): run `cargo build --workspace "
        "--bins` (or set KITED_BIN_DIR), or apt-get install redis-server"
    )
    if os.environ.get("CI") == "true":
        raise AssertionError(reason + " (CI=true: a missing prerequisite fails)")
    raise unittest.SkipTest(reason)


def eventually(what: str, check: Any, timeout: float = 5.0) -> Any:
    """Polls ``check()`` until it returns something truthy (returned); fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL_SECS)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 10.0) -> Tuple[int, Dict[str, str], str]:
    """One GET without following redirects: status, headers (lower-case names), body text."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path or "/")
        reply = conn.getresponse()
        body = reply.read().decode("utf-8", "replace")
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, body
    finally:
        conn.close()


def _stop_process(proc: Optional[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after :data:`TERM_DEADLINE`; always reaps."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TERM_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


class Sim:
    """A running ``kite-sim`` and its control routes (``/_sim/...``)."""

    def __init__(self, proc: subprocess.Popen, env: Dict[str, str], dir: tempfile.TemporaryDirectory) -> None:
        self.proc = proc
        self.env = env
        self._dir = dir
        self.root = env["KITE_API_ROOT"]
        self.api_key = env["KITE_API_KEY"]
        self.api_secret = env["KITE_API_SECRET"]

    @classmethod
    def start(cls) -> "Sim":
        """Starts kite-sim on an ephemeral port and reads the environment it prints."""
        program = require("kite-sim")
        dir = tempfile.TemporaryDirectory(prefix="kited-py-sim-")
        log = open(Path(dir.name) / "kite-sim.log", "wb")
        proc = subprocess.Popen(
            [program, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        log.close()
        try:
            line = cls._first_line(proc)
        except BaseException:
            _stop_process(proc)
            dir.cleanup()
            raise
        env = dict(word.split("=", 1) for word in line.split()[1:])
        return cls(proc, env, dir)

    @staticmethod
    def _first_line(proc: subprocess.Popen) -> str:
        deadline = time.monotonic() + START_DEADLINE
        data = b""
        assert proc.stdout is not None
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise AssertionError(f"kite-sim printed no environment line (got {data!r})")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                data += chunk
        line = data.split(b"\n", 1)[0].decode()
        if not line.startswith("export "):
            raise AssertionError(f"kite-sim printed {line!r}, not an export line")
        return line

    def log(self) -> str:
        """What the sim wrote to stderr (one line per API call)."""
        try:
            return (Path(self._dir.name) / "kite-sim.log").read_text()
        except OSError:
            return ""

    def control(self, route: str, **params: str) -> Any:
        """Calls ``/_sim/ROUTE?params`` and returns its JSON answer."""
        query = urllib.parse.urlencode(params)
        status, _, body = http_get(f"{self.root}/_sim/{route}" + (f"?{query}" if query else ""))
        if status != 200:
            raise AssertionError(f"/_sim/{route} answered {status}: {body}")
        return json.loads(body)

    def calls(self, path: Optional[str] = None) -> List[Dict[str, Any]]:
        """The API calls the sim received (control routes excluded), optionally for one path."""
        calls = self.control("calls")
        return [c for c in calls if path is None or c["path"] == path]

    def tokens(self) -> List[str]:
        """The access tokens the sim currently accepts."""
        return self.control("tokens")["access_tokens"]

    def kill(self, token: str) -> None:
        """Makes the sim refuse ``token`` from now on (as Kite does after a new login)."""
        self.control("kill", access_token=token)

    def new_access_token(self) -> Dict[str, Any]:
        """Logs in without kited: a request token exchanged with its checksum, as kited would.
        Returns the session data (``access_token``, ``user_id``, ``login_time``, ...)."""
        request_token = self.control("request-token")["request_token"]
        checksum = hashlib.sha256(
            (self.api_key + request_token + self.api_secret).encode()
        ).hexdigest()
        body = urllib.parse.urlencode(
            {"api_key": self.api_key, "request_token": request_token, "checksum": checksum}
        )
        parts = urllib.parse.urlsplit(self.root)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.request(
                "POST",
                "/session/token",
                body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded", "X-Kite-Version": "3"},
            )
            reply = conn.getresponse()
            answer = json.loads(reply.read())
        finally:
            conn.close()
        if reply.status != 200:
            raise AssertionError(f"the sim refused the exchange: {answer}")
        return answer["data"]

    def stop(self) -> None:
        """Stops the sim and removes its directory."""
        _stop_process(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._dir.cleanup()


class Kited:
    """A running ``kited`` with private XDG directories, talking to a :class:`Sim`."""

    def __init__(self, sim: Sim, config: Optional[str] = None) -> None:
        self.sim = sim
        self._dir = tempfile.TemporaryDirectory(prefix="kited-py-")
        self.dir = Path(self._dir.name)
        self.run_dir = _private_dir(self.dir / "run")
        _private_dir(self.dir / "config")
        if config is not None:
            # The default profile's config file, where kited looks for it.
            config_file = _private_dir(self.dir / "config" / "kited") / "default.toml"
            config_file.write_text(config)
            config_file.chmod(0o600)
        _private_dir(self.dir / "state")
        #: The socket kited makes by default: ``$XDG_RUNTIME_DIR/kited/default.sock``.
        self.socket = str(self.run_dir / "kited" / "default.sock")
        self._current_socket = self.socket
        self.log_path = self.dir / "kited.log"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @classmethod
    def start(cls, sim: Sim, config: Optional[str] = None) -> "Kited":
        """Starts kited (with ``config`` as its config file's text, if given) and waits until
        its socket answers ``ping`` and ``/healthz`` 200."""
        require("kited")
        daemon = cls(sim, config)
        try:
            daemon._spawn_and_wait()
        except BaseException:
            daemon.stop()
            raise
        return daemon

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> Dict[str, str]:
        """kited's whole environment: the sim's settings and the private directories only."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "XDG_RUNTIME_DIR": str(self.run_dir),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
            "XDG_STATE_HOME": str(self.dir / "state"),
            "RUST_LOG": "info",
            **self.sim.env,
        }

    def _spawn_and_wait(self, socket_path: Optional[str] = None) -> None:
        extra = ["--socket", socket_path] if socket_path else []
        for attempt in range(5):
            self.sim.control("redirect", url=f"{self.base_url}/auth/callback")
            with open(self.log_path, "ab") as log:
                log.write(f"--- fixture: starting kited on port {self.port}\n".encode())
                self.proc = subprocess.Popen(
                    [require("kited"), "--listen", f"127.0.0.1:{self.port}", *extra],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.environment(),
                )
            deadline = time.monotonic() + START_DEADLINE
            while True:
                if self.proc.poll() is not None:
                    if "in use" in self.log() and attempt < 4:
                        self.port = free_port()
                        break
                    raise AssertionError(f"kited exited before it was ready; log:\n{self.log()}")
                if self._ready():
                    return
                if time.monotonic() >= deadline:
                    raise AssertionError(f"kited was not ready in {START_DEADLINE}s; log:\n{self.log()}")
                time.sleep(POLL_SECS)
        raise AssertionError(f"kited found no free port; log:\n{self.log()}")

    def _ready(self) -> bool:
        try:
            if not self.request({"op": "ping"}, socket_path=self._current_socket).get("ok"):
                return False
            return http_get(f"{self.base_url}/healthz", timeout=2)[0] == 200
        except OSError:
            return False

    def log(self) -> str:
        """Everything kited wrote, all runs."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(
        self, request: Dict[str, Any], timeout: float = 10.0, socket_path: Optional[str] = None
    ) -> Dict[str, Any]:
        """One raw request on kited's socket (no trust checks: the fixture owns the daemon)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket_path or self._current_socket)
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def login(self) -> str:
        """The browser login: kited's login URL at the sim, whose 302 leads to kited's callback.
        Returns the callback page; fails unless kited says who logged in."""
        answer = self.request({"op": "login_url"})
        assert answer.get("ok"), answer
        status, headers, body = http_get(answer["login_url"])
        assert status == 302, f"the sim's login answered {status}: {body}"
        status, _, page = http_get(headers["location"])
        assert status == 200 and "Logged in as" in page, (
            f"kited's callback answered {status}: {page}\nkited log:\n{self.log()}"
        )
        return page

    def exchange(self) -> Dict[str, Any]:
        """A headless login: a request token from the sim, exchanged through kited's socket
        (``kitectl exchange``'s path). Returns kited's answer."""
        request_token = self.sim.control("request-token")["request_token"]
        answer = self.request({"op": "exchange", "request_token": request_token})
        assert answer.get("ok"), answer
        return answer

    def terminate(self) -> None:
        """SIGTERM (a clean stop: kited removes its socket); SIGKILL if it lingers."""
        _stop_process(self.proc)

    def restart(self, socket_path: Optional[str] = None) -> None:
        """Stops kited and starts it again on the same port, directories and store; with
        ``socket_path``, listening there instead of its default socket (so that clients of the
        default one see no daemon, and none of its events)."""
        self.terminate()
        self._current_socket = socket_path or self.socket
        self._spawn_and_wait(socket_path)

    def stop(self) -> None:
        """Stops kited and removes its directory."""
        self.terminate()
        self._dir.cleanup()


class RedisServer:
    """A throwaway ``redis-server`` on an ephemeral loopback port, no persistence."""

    def __init__(self, password: Optional[str] = None) -> None:
        self.password = password
        self._dir = tempfile.TemporaryDirectory(prefix="kited-py-redis-")
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None

    @classmethod
    def start(cls, password: Optional[str] = None) -> "RedisServer":
        """Starts redis-server and waits until it answers PING."""
        require("redis-server")
        server = cls(password)
        try:
            server.restart()
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (no password in it)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if self.password:
                    s.sendall(f"AUTH {self.password}\r\n".encode())
                    if not s.recv(64).startswith(b"+OK"):
                        return False
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def restart(self) -> None:
        """(Re)starts the server on the same port, empty."""
        self.terminate()
        args = [
            require("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", self._dir.name, "--save", "", "--appendonly", "no",
            "--logfile", str(Path(self._dir.name) / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_DEADLINE
        while not self._ping():
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                raise AssertionError(f"redis-server did not start on port {self.port}")
            time.sleep(POLL_SECS)

    def terminate(self) -> None:
        """Stops the server (the directory stays, for a restart)."""
        _stop_process(self.proc)

    def stop(self) -> None:
        """Stops the server and removes its directory."""
        self.terminate()
        self._dir.cleanup()
