"""Finding kited's socket, deciding whether to trust it, and talking to it (one JSON line each way).

The rules are kitectl's, so a program and ``kitectl`` always reach the same daemon:

* socket: the explicit ``socket`` argument, else ``$KITED_SOCKET``, else
  ``$XDG_RUNTIME_DIR/kited/PROFILE.sock``, else ``/tmp/kited-$UID/PROFILE.sock``;
* profile: the explicit ``profile`` argument, else ``$KITED_PROFILE``, else ``default``;
* trust: the socket's directory must be a real directory (not a symbolic link) owned by this user
  or root and not writable by the group or others (a root-owned sticky directory such as ``/tmp``
  excepted); the socket must be a socket owned by this user or root, or this user's own symbolic
  link to one (checked again at its target); and the kernel
  (``SO_PEERCRED``) must say the process listening runs as this user or root. A socket another
  user planted in ``/tmp`` must never learn what this program asks.
"""

from __future__ import annotations

import errno
import json
import os
import socket as _socketlib
import stat
import struct
from typing import Any, Dict, Iterator, Optional

from ._errors import NotRunning, KitedError, UntrustedSocket, from_daemon

#: The profile used when none is named, as in kitectl.
DEFAULT_PROFILE = "default"

#: How long connecting, writing and waiting for an ordinary answer may take (kitectl's value).
TIMEOUT_SECS = 5.0

#: kited refuses request lines over 64 KiB and never answers longer ones; a longer line from the
#: socket means something else is talking.
MAX_LINE = 64 * 1024

_START_HINT = "start it with `systemctl --user start kited` or `kited`"


def resolve_profile(profile: Optional[str]) -> str:
    """The profile to use: the argument, else ``$KITED_PROFILE``, else ``default``; checked."""
    name = profile if profile else (os.environ.get("KITED_PROFILE") or DEFAULT_PROFILE)
    allowed = all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    if not name or len(name) > 64 or not allowed or name.startswith("."):
        raise KitedError(
            "bad_request",
            f"profile name {name!r} must be 1-64 letters, digits, '-', '_' or '.', "
            "not starting with '.'",
        )
    return name


def runtime_dir() -> str:
    """The per-user directory for runtime files: ``$XDG_RUNTIME_DIR/kited``, or ``/tmp/kited-$UID``."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "kited")
    return f"/tmp/kited-{os.getuid()}"


def socket_path(socket: Optional[str], profile: Optional[str]) -> str:
    """The socket to connect to, by kitectl's order (see the module's documentation)."""
    if socket:
        return os.fspath(socket)
    from_env = os.environ.get("KITED_SOCKET")
    if from_env:
        return from_env
    return os.path.join(runtime_dir(), f"{resolve_profile(profile)}.sock")


def _trusted_uid(uid: int) -> bool:
    """This user or root (who can impersonate anyone anyway)."""
    return uid == os.geteuid() or uid == 0


def _owner_problem(path: str, uid: int) -> UntrustedSocket:
    return UntrustedSocket(
        f"refusing to talk to kited: {path} belongs to uid {uid}, not to you (uid "
        f"{os.geteuid()}): another user created it first, so it cannot be trusted; remove it, "
        "or set XDG_RUNTIME_DIR to a private directory"
    )


def _untrusted(what: str) -> UntrustedSocket:
    return UntrustedSocket(
        f"refusing to talk to kited: {what}; remove it, or set XDG_RUNTIME_DIR to a private "
        "directory"
    )


def _lstat(path: str) -> Optional[os.stat_result]:
    """``lstat`` of ``path``, ``None`` when nothing is there."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise _untrusted(f"cannot check {path}: {e.strerror}") from None


#: How many symbolic links in a row a socket path may go through (kitectl's bound): a link to a
#: link is plenty, and a bound ends a loop.
MAX_LINK_HOPS = 8


def _check_dir(directory: str) -> bool:
    """Checks the directory that holds the socket; ``False`` when it does not exist."""
    st = _lstat(directory)
    if st is None:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise _untrusted(f"{directory} is a symbolic link, not kited's own file")
    if not stat.S_ISDIR(st.st_mode):
        raise _untrusted(f"{directory} is not a directory")
    if not _trusted_uid(st.st_uid):
        raise _owner_problem(directory, st.st_uid)
    mode = st.st_mode & 0o7777
    sticky_root = mode & 0o1000 and st.st_uid == 0
    if mode & 0o022 and not sticky_root:
        raise _untrusted(
            f"{directory} can be written by other users (mode {mode & 0o777:04o}), "
            "so it cannot be trusted"
        )
    return True


def check_socket_path(path: str) -> None:
    """Checks the socket's directory and then the socket file, as kitectl does before connecting.

    The last component may be a symbolic link (``~/kited.sock`` pointing at the runtime socket)
    when the link itself belongs to this user or root and sits in a directory that passes the
    checks; its target is then checked the same way. A link in place of a directory is refused,
    as is a link someone else owns.

    Raises :class:`UntrustedSocket` on a problem. A missing directory or file is not a trust
    problem (connecting then reports that kited is not running).
    """
    for _ in range(MAX_LINK_HOPS + 1):
        directory = os.path.dirname(path)
        if directory and not _check_dir(directory):
            return
        st = _lstat(path)
        if st is None:
            return
        if stat.S_ISLNK(st.st_mode):
            if not _trusted_uid(st.st_uid):
                raise _owner_problem(path, st.st_uid)
            try:
                target = os.readlink(path)
            except OSError as e:
                raise _untrusted(f"cannot check {path}: {e.strerror}") from None
            path = os.path.join(directory, target) if directory else target
            continue
        if not stat.S_ISSOCK(st.st_mode):
            raise _untrusted(f"{path} is not a socket")
        if not _trusted_uid(st.st_uid):
            raise _owner_problem(path, st.st_uid)
        return
    raise _untrusted(f"{path}: more than {MAX_LINK_HOPS} symbolic links in a row")


def check_peer(sock: _socketlib.socket, path: str) -> None:
    """Checks through ``SO_PEERCRED`` that the process behind a connected socket is this user's."""
    try:
        creds = sock.getsockopt(
            _socketlib.SOL_SOCKET, _socketlib.SO_PEERCRED, struct.calcsize("3i")
        )
    except OSError as e:
        raise _untrusted(f"cannot check {path}: {e.strerror}") from None
    _pid, uid, _gid = struct.unpack("3i", creds)
    if not _trusted_uid(uid):
        raise _untrusted(
            f"the process listening on {path} runs as uid {uid}, not as you (uid "
            f"{os.geteuid()}): it is not your kited"
        )


def _unreachable(path: str, e: OSError) -> NotRunning:
    """Explains a failed ``connect(2)`` the way kitectl does."""
    code = e.errno
    if code in (errno.ENOENT, errno.ENOTDIR):
        return NotRunning(f"kited is not running (no socket at {path}): {_START_HINT}")
    if code == errno.ECONNREFUSED:
        return NotRunning(f"kited is not running (nothing listening on {path}): {_START_HINT}")
    if code in (errno.EAGAIN, errno.ETIMEDOUT):
        return NotRunning(
            f"kited is not answering (connecting to {path} timed out): "
            "check `systemctl --user status kited`"
        )
    if code in (errno.EACCES, errno.EPERM):
        return NotRunning(
            f"cannot connect to kited at {path}: permission denied (is it another user's daemon?)"
        )
    return NotRunning(f"cannot connect to kited at {path}: {e.strerror or e}")


class Connection:
    """One checked connection to kited: send a request, read answer lines."""

    def __init__(self, path: str, timeout: Optional[float] = TIMEOUT_SECS) -> None:
        """Connects to ``path`` after the trust checks; raises :class:`NotRunning` (or its
        subclass :class:`UntrustedSocket`) when that fails. ``timeout`` bounds each answer
        (``None``: wait for ever, for ``watch``); connecting is always bounded."""
        self.path = path
        check_socket_path(path)
        sock = _socketlib.socket(_socketlib.AF_UNIX, _socketlib.SOCK_STREAM)
        try:
            # A blocking AF_UNIX connect waits for room in a full backlog for at most
            # SO_SNDTIMEO, so this bounds connecting to a live but stuck daemon.
            bounded = struct.pack("ll", int(TIMEOUT_SECS), 0)
            sock.setsockopt(_socketlib.SOL_SOCKET, _socketlib.SO_SNDTIMEO, bounded)
            try:
                sock.connect(path)
            except OSError as e:
                raise _unreachable(path, e) from None
            check_peer(sock, path)
            sock.settimeout(timeout)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._buffer = b""
        self._timeout = timeout

    def set_timeout(self, timeout: Optional[float]) -> None:
        """Sets how long to wait for each answer; ``None`` waits for ever (``watch``)."""
        self._sock.settimeout(timeout)
        self._timeout = timeout

    def close(self) -> None:
        """Closes the connection."""
        self._sock.close()

    def shutdown(self) -> None:
        """Wakes a thread blocked reading this connection (it then sees the end of the stream)."""
        try:
            self._sock.shutdown(_socketlib.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: Dict[str, Any]) -> None:
        """Sends one request line."""
        line = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        try:
            self._sock.sendall(line)
        except OSError as e:
            raise NotRunning(f"lost the connection to kited at {self.path}: {e}") from None

    def read_line(self) -> Optional[bytes]:
        """The next line from kited, ``None`` once it hung up."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
                return line
            if len(self._buffer) > MAX_LINE:
                raise KitedError("protocol", f"an answer longer than {MAX_LINE} bytes from kited")
            try:
                chunk = self._sock.recv(8192)
            except _socketlib.timeout:
                raise NotRunning(
                    f"kited did not answer within {self._timeout:.0f}s ({self.path}): "
                    "check `systemctl --user status kited`"
                ) from None
            except OSError as e:
                raise NotRunning(f"lost the connection to kited at {self.path}: {e}") from None
            if not chunk:
                return None
            self._buffer += chunk

    def read_answer(self) -> Dict[str, Any]:
        """The next answer object; an ``{"ok": false}`` answer becomes the matching exception."""
        line = self.read_line()
        if line is None:
            raise NotRunning(f"kited closed the connection without answering ({self.path})")
        return parse_answer(line)

    def call(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Sends ``request`` and returns kited's (successful) answer."""
        self.send(request)
        return self.read_answer()

    def events(self) -> Iterator[Dict[str, Any]]:
        """After a successful ``watch``: the event objects, until kited hangs up."""
        while True:
            line = self.read_line()
            if line is None:
                return
            try:
                event = json.loads(line)
            except ValueError:
                raise KitedError("protocol", "an event from kited that is not JSON") from None
            if isinstance(event, dict):
                yield event


def parse_answer(line: bytes) -> Dict[str, Any]:
    """Decodes one answer line: the object when ``ok``, else raises the error it carries."""
    try:
        answer = json.loads(line)
    except ValueError:
        raise KitedError("protocol", "an answer from kited that is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise KitedError("protocol", "an answer from kited without an \"ok\" field")
    if answer["ok"]:
        return answer
    error = answer.get("error") or {}
    kind = str(error.get("kind") or "internal")
    message = str(error.get("message") or kind)
    raise from_daemon(kind, message)
