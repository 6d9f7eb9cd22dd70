"""Redis mode against a real redis-server: the test writes the key and publishes the events the
way kited's Redis sink does (``SET key VALUE EXAT ...`` then ``PUBLISH channel EVENT``)."""

from __future__ import annotations

import json
import os
import threading
import time
import unittest
from datetime import datetime, timedelta, timezone

import kited
from daemon_fixture import Kited, RedisServer, Sim, eventually
from test_socket import ROTATION_DEADLINE, clean_env

try:
    import redis
except ImportError:  # the run-tests script installs it; without it this module cannot run
    redis = None

IST = timezone(timedelta(hours=5, minutes=30))


def next_cutoff() -> datetime:
    """The next 06:00 IST, as kited computes a token's expiry."""
    now = datetime.now(IST)
    cutoff = now.replace(hour=6, minute=0, second=0, microsecond=0)
    return cutoff if cutoff > now else cutoff + timedelta(days=1)


def sim_and_redis(test: unittest.TestCase, password: str = None) -> tuple[Sim, RedisServer]:
    """A simulator and a redis-server (wanting ``password`` if given), stopped when ``test``
    ends. Without the redis package the test is skipped, or fails under CI=true, where it must
    run."""
    if redis is None:
        if os.environ.get("CI") == "true":
            test.fail("the redis package is not installed (CI=true: this must run)")
        test.skipTest("the redis package is not installed: pip install redis")
    sim = Sim.start()
    test.addCleanup(sim.stop)
    server = RedisServer.start(password=password)
    test.addCleanup(server.stop)
    return sim, server


class RedisMode(unittest.TestCase):
    password = None

    def setUp(self) -> None:
        self.sim, self.server = sim_and_redis(self, password=self.password)
        env = {"KITED_REDIS_URL": self.server.url}
        if self.password:
            env["KITED_REDIS_PASSWORD"] = self.password
        clean_env(self, **env)
        self.redis = redis.Redis.from_url(self.server.url, password=self.password)
        self.addCleanup(self.redis.close)
        self.key = "kite:default:token"
        self.channel = "kite:default:events"

    def publish_login(self, key: str = None, channel: str = None) -> str:
        """What kited does on a new token: the value with its TTL, then the event."""
        data = self.sim.new_access_token()
        expires = next_cutoff()
        value = {
            "api_key": self.sim.api_key,
            "access_token": data["access_token"],
            "expires_at": expires.isoformat(),
            "user_id": data["user_id"],
            "login_time": datetime.now(IST).isoformat(timespec="seconds"),
        }
        self.redis.set(key or self.key, json.dumps(value), exat=int(expires.timestamp()))
        event = {
            "event": "token_new",
            "at": datetime.now(IST).isoformat(timespec="seconds"),
            "user_id": data["user_id"],
            "user_name": data.get("user_name", ""),
            "expires_at": expires.isoformat(),
        }
        self.redis.publish(channel or self.channel, json.dumps(event))
        return data["access_token"]

    def test_missing_key_is_login_required(self) -> None:
        with self.assertRaises(kited.LoginRequired) as caught:
            kited.get_token()
        self.assertIn(self.key, str(caught.exception))

    def test_session_from_redis(self) -> None:
        token = self.publish_login()
        session = kited.session()
        self.assertEqual(session.access_token, token)
        self.assertEqual(session.api_key, self.sim.api_key)
        self.assertEqual(session.expires_at, next_cutoff())
        self.assertEqual(kited.get_token(), token)
        self.assertNotIn(token, repr(session))

    def test_a_value_past_its_expiry_is_login_required(self) -> None:
        past = datetime.now(IST) - timedelta(minutes=1)
        value = {"api_key": self.sim.api_key, "access_token": "x" * 32,
                 "expires_at": past.isoformat(), "user_id": "AB1234", "login_time": past.isoformat()}
        self.redis.set(self.key, json.dumps(value))
        with self.assertRaises(kited.LoginRequired):
            kited.get_token()

    def test_profile_and_key_names(self) -> None:
        token = self.publish_login(key="kite:prod:token")
        self.assertEqual(kited.get_token(profile="prod"), token)
        os.environ["KITED_PROFILE"] = "prod"
        self.assertEqual(kited.get_token(), token)
        os.environ["KITED_REDIS_KEY"] = "bots/{profile}/kite"
        with self.assertRaises(kited.LoginRequired):
            kited.get_token()
        other = self.publish_login(key="bots/prod/kite")
        self.assertEqual(kited.get_token(), other)

    def test_an_explicit_socket_wins_over_redis(self) -> None:
        self.publish_login()
        with self.assertRaises(kited.NotRunning) as caught:
            kited.get_token(socket="/nonexistent/kited.sock")
        self.assertEqual(caught.exception.kind, "not_running")

    def test_unreachable_redis_is_not_running(self) -> None:
        self.server.terminate()
        with self.assertRaises(kited.NotRunning) as caught:
            kited.get_token()
        self.assertEqual(caught.exception.kind, "redis_unreachable")

    def test_wait_follows_the_channel(self) -> None:
        got: dict = {}

        def waiter() -> None:
            try:
                got["token"] = kited.get_token(wait=20)
            except Exception as e:  # reported below
                got["error"] = e

        thread = threading.Thread(target=waiter)
        thread.start()
        eventually("the waiter to subscribe",
                   lambda: self.redis.pubsub_numsub(self.channel)[0][1] == 1)
        token = self.publish_login()
        thread.join(20)
        self.assertEqual(got, {"token": token})

    def test_official_client_follows_the_channel(self) -> None:
        first = self.publish_login()
        kite = kited.kite(root=self.sim.root)
        self.addCleanup(kite.close)
        self.assertEqual(kite.access_token, first)
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        second = self.publish_login()
        eventually("the client to take the new token", lambda: kite.access_token == second,
                   timeout=ROTATION_DEADLINE)
        self.sim.kill(first)
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        self.assertEqual(self.sim.calls("/user/profile")[-1]["authorization"],
                         f"token {self.sim.api_key}:{second}")
        kite.close()
        self.assertFalse(kite.following)
        self.assertEqual(self.redis.pubsub_numsub(self.channel)[0][1], 0)

    def test_a_redis_restart_under_a_running_client(self) -> None:
        first = self.publish_login()
        kite = kited.kite(root=self.sim.root)
        self.addCleanup(kite.close)
        eventually("the client to subscribe",
                   lambda: self.redis.pubsub_numsub(self.channel)[0][1] == 1)
        self.server.restart()
        # The next login after Redis came back (empty): the client must have resubscribed, or
        # compared on resubscribing, to take it.
        second = self.publish_login()
        eventually("the client to take the new token", lambda: kite.access_token == second,
                   timeout=ROTATION_DEADLINE + 2)
        self.assertNotEqual(first, second)


class RedisModeWithPassword(RedisMode):
    """The same, against a server that wants a password (from ``KITED_REDIS_PASSWORD``)."""

    password = "s3cret-redis-pw"

    def test_without_the_password_redis_refuses(self) -> None:
        del os.environ["KITED_REDIS_PASSWORD"]
        with self.assertRaises(kited.NotRunning) as caught:
            kited.get_token()
        self.assertNotIn(self.password, str(caught.exception))


if __name__ == "__main__":
    unittest.main()


class ThroughKitedsRedisSink(unittest.TestCase):
    """The whole path a bot in a container takes: a real kited writes Redis through its
    ``[sinks.redis]`` sink, and the library reads and follows Redis alone (no socket)."""

    def setUp(self) -> None:
        self.sim, self.server = sim_and_redis(self)
        self.daemon = Kited.start(self.sim, config=f'[sinks.redis]\nurl = "{self.server.url}"\n')
        self.addCleanup(self.daemon.stop)
        clean_env(self, KITED_REDIS_URL=self.server.url)

    def test_a_bot_reading_redis_follows_kiteds_logins(self) -> None:
        self.daemon.login()
        first = eventually("kited to write the key", lambda: _token_in(self.server.url))
        kite = kited.kite(root=self.sim.root)
        self.addCleanup(kite.close)
        self.assertEqual(kite.access_token, first)
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        self.daemon.login()
        second = eventually("the client to take the new token",
                            lambda: kite.access_token if kite.access_token != first else None,
                            timeout=ROTATION_DEADLINE)
        self.assertEqual(second, kited.get_token(socket=self.daemon.socket))
        self.sim.kill(first)
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        # A logout deletes the key: the bot is told to log in, never handed the dead token.
        self.assertTrue(self.daemon.request({"op": "logout"}).get("ok"))
        eventually("kited to delete the key", lambda: _token_in(self.server.url) is None)
        with self.assertRaises(kited.LoginRequired):
            kited.get_token()


def _token_in(url: str):
    """The access token kited's sink wrote to Redis, or None."""
    client = redis.Redis.from_url(url)
    try:
        value = client.get("kite:default:token")
    finally:
        client.close()
    return json.loads(value)["access_token"] if value else None
