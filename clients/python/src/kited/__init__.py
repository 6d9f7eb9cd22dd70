"""The live Kite Connect access token from kited, for Python programs.

kited keeps one Kite Connect login alive on a machine; this package hands its token to Python::

    import kited
    token = kited.get_token()      # the access token alone
    s = kited.session()            # api_key, access_token, expires_at
    kite = kited.kite()            # a kiteconnect.KiteConnect kept on the live token
    kite.profile()

The token comes from kited's Unix socket on this machine (found and checked as ``kitectl`` does),
or, when ``KITED_REDIS_URL`` is set, from the Redis key kited publishes it under. Nothing here
logs or prints a token. Standard library only; ``kiteconnect`` and ``redis`` are optional extras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ._errors import KitedError, LoginRequired, NotRunning, UntrustedSocket
from ._session import Session
from ._sources import open_source

if TYPE_CHECKING:
    from ._live import LiveKiteConnect

__all__ = [
    "get_token",
    "session",
    "kite",
    "Session",
    "LiveKiteConnect",
    "KitedError",
    "NotRunning",
    "UntrustedSocket",
    "LoginRequired",
]

__version__ = "0.1.0"


def session(
    profile: Optional[str] = None, socket: Optional[str] = None, wait: Optional[float] = None
) -> Session:
    """The current session: ``api_key``, ``access_token`` and ``expires_at`` (aware datetime).

    ``profile`` names kited's profile (default ``$KITED_PROFILE``, else ``default``); ``socket``
    is an explicit socket path (default ``$KITED_SOCKET``, else the profile's socket in
    ``$XDG_RUNTIME_DIR/kited/`` or ``/tmp/kited-$UID/``); with ``wait`` (seconds), blocks until a
    valid token arrives or the time is up. With ``KITED_REDIS_URL`` set and no ``socket``, reads
    Redis instead.

    Raises :class:`LoginRequired` when nobody is logged in, :class:`NotRunning` when kited (or
    Redis) cannot be reached, :class:`UntrustedSocket` (a :class:`NotRunning`) when the socket is
    not this user's, and :class:`KitedError` for anything else.
    """
    return open_source(profile, socket).session(wait)


def get_token(
    profile: Optional[str] = None, socket: Optional[str] = None, wait: Optional[float] = None
) -> str:
    """The current access token alone; arguments and errors as for :func:`session`."""
    return session(profile, socket, wait).access_token


def kite(
    profile: Optional[str] = None,
    socket: Optional[str] = None,
    wait: Optional[float] = None,
    **kwargs: Any,
) -> "LiveKiteConnect":
    """A ``kiteconnect.KiteConnect`` with the api key and token set, kept on the live token.

    ``kwargs`` go to ``KiteConnect`` (e.g. ``root=``, ``timeout=``). The result is a
    :class:`LiveKiteConnect` (a ``KiteConnect`` subclass) whose follower thread calls
    ``set_access_token`` on every new token, and whose session-expiry hook re-reads the token
    when Kite refuses it. A failed call is never retried. Call ``close()`` (or use it in a
    ``with`` block) to stop the thread. Needs the ``kiteconnect`` package (``kited[kiteconnect]``).
    Other arguments and errors as for :func:`session`.
    """
    try:
        from ._live import LiveKiteConnect
    except ImportError as e:
        if getattr(e, "name", None) not in (None, "kiteconnect") and "kiteconnect" not in str(e):
            raise
        raise KitedError(
            "missing_package",
            "kited.kite() needs the kiteconnect package: pip install 'kited[kiteconnect]'",
        ) from None
    source = open_source(profile, socket)
    return LiveKiteConnect(source, source.session(wait), **kwargs)


def __getattr__(name: str) -> Any:
    """``kited.LiveKiteConnect`` imports ``kiteconnect`` only when asked for."""
    if name == "LiveKiteConnect":
        from ._live import LiveKiteConnect

        return LiveKiteConnect
    raise AttributeError(f"module 'kited' has no attribute {name!r}")
