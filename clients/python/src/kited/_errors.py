"""The exceptions the library raises: one base class, one subclass per case a program acts on."""

from __future__ import annotations


def _one_line(message: str) -> str:
    """Joins a message onto one line, so every error prints as a single line a person can act on."""
    return " ".join(str(message).split())


class KitedError(Exception):
    """Anything that kept the library from handing out a token.

    ``kind`` names the case in a word a program can test: the daemon's own error kinds
    (``login_required``, ``not_configured``, ``kite``, ``bad_request``, ...) and the library's
    (``not_running``, ``untrusted_socket``, ``protocol``, ``redis``, ``missing_package``).
    ``str(error)`` is one line, never containing a token.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = _one_line(message)
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, message={self.message!r})"


class NotRunning(KitedError):
    """No kited could be reached: no socket, nobody listening, no answer in time, or (in Redis
    mode) Redis itself unreachable. The case ``kitectl`` exits 3 for."""

    def __init__(self, message: str, kind: str = "not_running") -> None:
        super().__init__(kind, message)


class UntrustedSocket(NotRunning):
    """The socket, its directory or the process behind it does not belong to this user (or root).

    A subclass of :class:`NotRunning`, because for a program it is the same situation (there is
    no kited of its own to ask, and ``kitectl`` exits 3 here too), with its own ``kind``,
    ``untrusted_socket``, for programs that want to tell the two apart.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="untrusted_socket")


class LoginRequired(KitedError):
    """There is no valid token: someone must log in (``kitectl login``). ``kitectl`` exits 4."""

    def __init__(self, message: str) -> None:
        super().__init__("login_required", message)


def from_daemon(kind: str, message: str) -> KitedError:
    """The exception for an ``{"ok": false, "error": {...}}`` answer (from kited or Redis mode)."""
    if kind == "login_required":
        return LoginRequired(message)
    return KitedError(kind, message)
