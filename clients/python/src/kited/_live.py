"""The official ``kiteconnect.KiteConnect`` client, kept on the current token by a follower thread."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from kiteconnect import KiteConnect  # type: ignore[import-untyped]

from ._session import Session
from ._sources import Source

#: How long :meth:`LiveKiteConnect.close` waits for the follower thread by default: long enough
#: for a Redis follower to look up from its wait.
CLOSE_TIMEOUT_SECS = 5.0
#: How long :func:`kited.kite` waits for the follower's first subscription, so that a login
#: right after it returns cannot be missed; past it the client works and follows when it can.
FOLLOW_START_SECS = 5.0


class LiveKiteConnect(KiteConnect):
    """A ``KiteConnect`` whose ``access_token`` follows kited.

    It *is* a ``kiteconnect.KiteConnect`` (a subclass), so every API method works as documented
    by Zerodha. On top:

    * a daemon thread follows kited (``watch`` on the socket, or the Redis channel) and calls
      :meth:`set_access_token` on every new token; it reconnects after a kited restart with
      backoff (50 ms doubling up to 30 s) and on each reconnection compares tokens, so a login
      made while it was away is picked up;
    * when Kite answers a call with a token error, the session-expiry hook re-reads the token
      from kited before the error reaches the caller. The failed call is **not** retried (an
      order may not be idempotent): the caller sees Kite's exception and decides; the next call
      uses the re-read token. A hook set with :meth:`set_session_expiry_hook` still runs, after
      the re-read;
    * :meth:`close` stops the thread (the hook stays); it is also a context manager.
    """

    def __init__(self, source: Source, session: Session, **kwargs: Any) -> None:
        """Sets up the client with ``session``'s api key and token and starts following
        ``source``. ``kwargs`` go to ``KiteConnect`` (``root``, ``timeout``, ``debug``, ...)."""
        super().__init__(api_key=session.api_key, access_token=session.access_token, **kwargs)
        self._kited_source = source
        self._kited_user_hook: Optional[Callable[[], Any]] = None
        self._kited_lock = threading.Lock()
        self._kited_stop = threading.Event()
        super().set_session_expiry_hook(self._kited_session_expired)
        self._kited_thread = threading.Thread(
            target=source.follow,
            args=(self._kited_stop, self._kited_apply),
            name="kited-token-follower",
            daemon=True,
        )
        self._kited_thread.start()
        source.followed_once.wait(FOLLOW_START_SECS)

    def set_session_expiry_hook(self, method: Callable[[], Any]) -> None:
        """Adds the program's own hook for Kite's token errors; it runs after the library has
        re-read the token from kited."""
        if not callable(method):
            raise TypeError("Invalid input type. Only functions are accepted.")
        self._kited_user_hook = method

    def _kited_apply(self, session: Session) -> None:
        """Switches to ``session``'s token (and api key) when it differs from the one in use."""
        with self._kited_lock:
            if session.api_key != self.api_key:
                self.api_key = session.api_key
            if session.access_token != self.access_token:
                self.set_access_token(session.access_token)

    def _kited_session_expired(self) -> None:
        """Kite refused the token: take whatever token kited has now. Never raises, so Kite's own
        error reaches the caller unchanged."""
        self._kited_source._refresh(self._kited_apply)
        if self._kited_user_hook is not None:
            self._kited_user_hook()

    @property
    def following(self) -> bool:
        """Whether the follower thread is still running."""
        return self._kited_thread.is_alive()

    def close(self, timeout: float = CLOSE_TIMEOUT_SECS) -> None:
        """Stops following kited and waits up to ``timeout`` seconds for the thread to end. The
        client keeps working with the token it has; calling ``close`` twice is harmless."""
        self._kited_stop.set()
        self._kited_source.interrupt()
        if self._kited_thread is not threading.current_thread():
            self._kited_thread.join(timeout)

    def __enter__(self) -> "LiveKiteConnect":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
