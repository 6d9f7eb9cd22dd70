"""Where a token comes from: kited's socket on this host, or Redis (where kited publishes it for
other hosts and containers). Both read the current session and follow new tokens as they come."""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from ._errors import KitedError, LoginRequired, NotRunning
from ._session import Session
from ._socket import TIMEOUT_SECS, Connection, resolve_profile, socket_path

log = logging.getLogger("kited")

#: The first pause before reconnecting to a daemon (or Redis) that went away: short, because a
#: restart usually takes well under a second.
RECONNECT_FIRST_SECS = 0.05
#: The longest pause between reconnection attempts, so a program notices a daemon that comes back
#: within half a minute while a long outage costs almost nothing.
RECONNECT_MAX_SECS = 30.0

#: Where the token lives in Redis, and the channel its events go to (``{profile}`` is replaced);
#: overridable with ``KITED_REDIS_KEY`` and ``KITED_REDIS_CHANNEL``, like kited's own settings.
DEFAULT_REDIS_KEY = "kite:{profile}:token"
DEFAULT_REDIS_CHANNEL = "kite:{profile}:events"

#: How often a Redis follower looks up from waiting for a message to see whether it was closed.
REDIS_POLL_SECS = 0.5

Apply = Callable[[Session], None]


class Source:
    """A place to read the session from and to follow for new tokens."""

    def session(self, wait: Optional[float] = None) -> Session:
        """The current valid session; with ``wait``, blocks up to that many seconds for one."""
        raise NotImplementedError

    def follow(self, stop: threading.Event, apply: Apply) -> None:
        """Calls ``apply`` with the current session whenever a new token may have arrived (each
        ``token_new`` and every (re)connection, so a change missed while disconnected is caught),
        reconnecting with backoff, until ``stop`` is set. Never raises."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Wakes :meth:`follow` so it sees ``stop`` promptly."""

    @property
    def followed_once(self) -> threading.Event:
        """Set once :meth:`follow` has subscribed and re-read the token (or its first try
        failed and a retry is due): from then on no login can be missed."""
        event = self.__dict__.get("_followed_once")
        if event is None:
            event = self.__dict__.setdefault("_followed_once", threading.Event())
        return event

    def _refresh(self, apply: Apply) -> None:
        """Reads the session and hands it over; no valid token (or a failed read) is not an error
        for a follower: the next event or reconnection tries again."""
        try:
            current = self.session()
        except LoginRequired:
            return
        except KitedError as e:
            log.debug("kited: could not re-read the token: %s", e)
            return
        apply(current)


def open_source(
    profile: Optional[str] = None, socket: Optional[str] = None
) -> Source:
    """The source for these arguments: an explicit ``socket`` always means kited's socket;
    otherwise ``KITED_REDIS_URL`` in the environment means Redis; otherwise the socket."""
    redis_url = os.environ.get("KITED_REDIS_URL")
    if redis_url and not socket:
        return RedisSource(redis_url, resolve_profile(profile))
    return DaemonSource(socket_path(socket, profile))


class DaemonSource(Source):
    """kited's Unix socket: ``get_token`` for the session, ``watch`` for new tokens."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._watching: Optional[Connection] = None

    def session(self, wait: Optional[float] = None) -> Session:
        request: dict = {"op": "get_token"}
        timeout = TIMEOUT_SECS
        if wait is not None and wait > 0:
            request["wait_secs"] = int(math.ceil(wait))
            timeout += request["wait_secs"]
        with Connection(self.path, timeout=timeout) as conn:
            return Session.from_answer(conn.call(request))

    def follow(self, stop: threading.Event, apply: Apply) -> None:
        backoff = RECONNECT_FIRST_SECS
        while not stop.is_set():
            conn: Optional[Connection] = None
            try:
                conn = Connection(self.path)
                with self._lock:
                    self._watching = conn
                if stop.is_set():
                    break
                conn.call({"op": "watch"})
                conn.set_timeout(None)
                backoff = RECONNECT_FIRST_SECS
                self._refresh(apply)
                self.followed_once.set()
                for event in conn.events():
                    if event.get("event") == "token_new":
                        self._refresh(apply)
                if not stop.is_set():
                    log.debug("kited: %s hung up; reconnecting", self.path)
            except KitedError as e:
                if not stop.is_set():
                    log.debug("kited: cannot watch %s: %s", self.path, e)
            except Exception:  # a follower must outlive any surprise
                log.exception("kited: the token follower failed; reconnecting")
            finally:
                self.followed_once.set()
                with self._lock:
                    self._watching = None
                if conn is not None:
                    conn.close()
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, RECONNECT_MAX_SECS)

    def interrupt(self) -> None:
        with self._lock:
            if self._watching is not None:
                self._watching.shutdown()


def _import_redis() -> Any:
    try:
        import redis  # type: ignore[import-not-found]
    except ImportError:
        raise KitedError(
            "missing_package",
            "KITED_REDIS_URL is set but the redis package is not installed: "
            "pip install 'kited[redis]'",
        ) from None
    return redis


def _redacted(url: str) -> str:
    """The URL without any password, for messages."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
        return f"{scheme}://***@{rest}"
    return url


class RedisSource(Source):
    """Redis: ``GET key`` for the session (a missing key means nobody is logged in), ``SUBSCRIBE
    channel`` for new tokens. kited keeps the key current and publishes its events there."""

    def __init__(self, url: str, profile: str) -> None:
        redis = _import_redis()
        self._redis = redis
        self.url = url
        self.key = os.environ.get("KITED_REDIS_KEY", DEFAULT_REDIS_KEY).replace(
            "{profile}", profile
        )
        self.channel = os.environ.get("KITED_REDIS_CHANNEL", DEFAULT_REDIS_CHANNEL).replace(
            "{profile}", profile
        )
        options: dict = {"socket_connect_timeout": TIMEOUT_SECS, "socket_timeout": TIMEOUT_SECS}
        password = os.environ.get("KITED_REDIS_PASSWORD")
        if password:
            options["password"] = password
        username = os.environ.get("KITED_REDIS_USERNAME")
        if username:
            options["username"] = username
        try:
            self._client = redis.Redis.from_url(url, **options)
        except ValueError as e:
            raise KitedError("bad_request", f"KITED_REDIS_URL is not a Redis URL: {e}") from None

    def _unreachable(self, e: Exception) -> NotRunning:
        return NotRunning(
            f"cannot reach Redis at {_redacted(self.url)}: {type(e).__name__}: {e}",
            kind="redis_unreachable",
        )

    def _read(self) -> Session:
        try:
            raw = self._client.get(self.key)
        except self._redis.exceptions.RedisError as e:
            raise self._unreachable(e) from None
        if raw is None:
            raise LoginRequired(
                f"no Kite token in Redis under {self.key}: log in with `kitectl login` "
                "on the machine running kited"
            )
        try:
            value = json.loads(raw)
        except ValueError:
            raise KitedError("protocol", f"the value of {self.key} in Redis is not JSON") from None
        session = Session.from_answer(value)
        if session.expires_at <= datetime.now(timezone.utc):
            raise LoginRequired(
                f"the Kite token in Redis expired at {session.expires_at.isoformat()}: "
                "log in with `kitectl login`"
            )
        return session

    def session(self, wait: Optional[float] = None) -> Session:
        if wait is None or wait <= 0:
            return self._read()
        deadline = time.monotonic() + wait
        pubsub = self._client.pubsub()
        try:
            try:
                pubsub.subscribe(self.channel)
            except self._redis.exceptions.RedisError as e:
                raise self._unreachable(e) from None
            # Subscribed before reading, so a token published in between is not missed.
            while True:
                try:
                    return self._read()
                except LoginRequired:
                    if time.monotonic() >= deadline:
                        raise
                self._wait_for_token_new(pubsub, deadline)
        finally:
            pubsub.close()

    def _wait_for_token_new(self, pubsub: Any, deadline: float) -> None:
        """Returns when a ``token_new`` arrived on the channel or the deadline passed."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = pubsub.get_message(timeout=min(left, REDIS_POLL_SECS))
            except self._redis.exceptions.RedisError as e:
                raise self._unreachable(e) from None
            if message and _event_name(message) == "token_new":
                return

    def follow(self, stop: threading.Event, apply: Apply) -> None:
        backoff = RECONNECT_FIRST_SECS
        while not stop.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not stop.is_set():
                    message = pubsub.get_message(timeout=REDIS_POLL_SECS)
                    if not message:
                        continue
                    if message.get("type") == "subscribe":
                        # Every (re)subscription: compare tokens, in case one was missed.
                        backoff = RECONNECT_FIRST_SECS
                        self._refresh(apply)
                        self.followed_once.set()
                    elif _event_name(message) == "token_new":
                        self._refresh(apply)
            except (self._redis.exceptions.RedisError, OSError) as e:
                if not stop.is_set():
                    log.debug("kited: lost Redis at %s: %s", _redacted(self.url), e)
            except Exception:  # a follower must outlive any surprise
                log.exception("kited: the Redis token follower failed; reconnecting")
            finally:
                self.followed_once.set()
                try:
                    pubsub.close()
                except Exception:
                    pass
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, RECONNECT_MAX_SECS)


def _event_name(message: Any) -> Optional[str]:
    """The ``event`` field of a pub/sub message carrying one of kited's events, else ``None``."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return None
    data = message.get("data")
    try:
        event = json.loads(data)
    except (TypeError, ValueError):
        return None
    return event.get("event") if isinstance(event, dict) else None
