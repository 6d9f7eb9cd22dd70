"""The library against a real kited (and kite-sim) over its real Unix socket."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import kited
from kited import _socket as socket_rules
from daemon_fixture import Kited, Sim, eventually

#: Variables that would point the library somewhere else than the test's daemon.
CLIENT_ENV = ("KITED_SOCKET", "KITED_PROFILE", "KITED_REDIS_URL", "KITED_REDIS_PASSWORD",
              "KITED_REDIS_KEY", "KITED_REDIS_CHANNEL", "XDG_RUNTIME_DIR")
#: How long a token change may take to reach a running client in these tests (the product's
#: goal is 100 ms; this leaves room for a loaded CI machine).
ROTATION_DEADLINE = 5.0


def clean_env(test: unittest.TestCase, **values: str) -> None:
    """Removes the client's variables for the test's duration and sets ``values``."""
    patcher = mock.patch.dict(os.environ)
    patcher.start()
    test.addCleanup(patcher.stop)
    for name in CLIENT_ENV:
        os.environ.pop(name, None)
    os.environ.update(values)


class SocketDiscoveryAndTrust(unittest.TestCase):
    """Where the socket is looked for and when it is refused; no daemon needed."""

    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="kited-py-trust-")
        self.addCleanup(self.tmp.cleanup)
        self.dir = Path(self.tmp.name)
        clean_env(self, XDG_RUNTIME_DIR=str(self.dir / "xdg"))

    def test_path_order_matches_kitectl(self) -> None:
        xdg = str(self.dir / "xdg")
        self.assertEqual(socket_rules.socket_path(None, None), f"{xdg}/kited/default.sock")
        os.environ["KITED_PROFILE"] = "prod"
        self.assertEqual(socket_rules.socket_path(None, None), f"{xdg}/kited/prod.sock")
        self.assertEqual(socket_rules.socket_path(None, "dev"), f"{xdg}/kited/dev.sock")
        os.environ["KITED_SOCKET"] = "/elsewhere/k.sock"
        self.assertEqual(socket_rules.socket_path(None, "dev"), "/elsewhere/k.sock")
        self.assertEqual(socket_rules.socket_path("/explicit.sock", "dev"), "/explicit.sock")
        del os.environ["KITED_SOCKET"], os.environ["XDG_RUNTIME_DIR"]
        self.assertEqual(
            socket_rules.socket_path(None, "dev"), f"/tmp/kited-{os.getuid()}/dev.sock"
        )

    def test_bad_profile_names_are_refused(self) -> None:
        for bad in ["../x", "a/b", ".hidden", "x y", "p" * 65]:
            with self.assertRaises(kited.KitedError) as caught:
                kited.get_token(profile=bad)
            self.assertEqual(caught.exception.kind, "bad_request")

    def test_no_daemon_is_not_running(self) -> None:
        with self.assertRaises(kited.NotRunning) as caught:
            kited.get_token()
        self.assertEqual(caught.exception.kind, "not_running")
        self.assertIn("xdg/kited/default.sock", str(caught.exception))
        self.assertNotIsInstance(caught.exception, kited.LoginRequired)
        # A socket file with nobody listening (a daemon that died without cleaning up).
        run = self.dir / "xdg" / "kited"
        run.mkdir(parents=True, mode=0o700)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(run / "default.sock"))
        stale.close()
        with self.assertRaises(kited.NotRunning) as caught:
            kited.session()
        self.assertIn("nothing listening", str(caught.exception))

    def listener_in(self, directory: Path) -> socket.socket:
        """A live listener in ``directory``: anything that reached it would be a leak."""
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(directory / "default.sock"))
        listener.listen(1)
        listener.setblocking(False)
        self.addCleanup(listener.close)
        return listener

    def assert_never_connected(self, listener: socket.socket) -> None:
        with self.assertRaises(BlockingIOError):
            listener.accept()

    def test_a_socket_directory_writable_by_others_is_refused(self) -> None:
        loose = self.dir / "loose"
        loose.mkdir()
        listener = self.listener_in(loose)
        loose.chmod(0o777)
        with self.assertRaises(kited.UntrustedSocket) as caught:
            kited.get_token(socket=str(loose / "default.sock"))
        error = caught.exception
        self.assertIsInstance(error, kited.NotRunning)
        self.assertEqual(error.kind, "untrusted_socket")
        self.assertIn("can be written by other users (mode 0777)", str(error))
        self.assert_never_connected(listener)
        # Group-writable is just as bad; private again is fine (and then reaches the listener).
        loose.chmod(0o770)
        with self.assertRaises(kited.UntrustedSocket):
            kited.get_token(socket=str(loose / "default.sock"))
        self.assert_never_connected(listener)

    def test_a_symlinked_directory_or_a_foreign_socket_is_refused(self) -> None:
        real = self.dir / "real"
        real.mkdir(mode=0o700)
        listener = self.listener_in(real)
        (self.dir / "link").symlink_to(real)
        with self.assertRaises(kited.UntrustedSocket) as caught:
            kited.get_token(socket=str(self.dir / "link" / "default.sock"))
        self.assertIn("symbolic link", str(caught.exception))
        plain = real / "plain.sock"
        plain.write_text("")
        with self.assertRaises(kited.UntrustedSocket) as caught:
            kited.get_token(socket=str(plain))
        self.assertIn("not a socket", str(caught.exception))
        self.assert_never_connected(listener)

    def test_the_users_own_link_to_a_socket_is_followed_and_its_target_checked(self) -> None:
        real = self.dir / "real"
        real.mkdir(mode=0o700)
        self.listener_in(real)
        # An absolute link, a relative one, and a link to a link: all reach the socket.
        (real / "alias.sock").symlink_to(real / "default.sock")
        (real / "relative.sock").symlink_to("default.sock")
        (self.dir / "again.sock").symlink_to(real / "alias.sock")
        for link in ["alias.sock", "relative.sock"]:
            socket_rules.check_socket_path(str(real / link))
        socket_rules.check_socket_path(str(self.dir / "again.sock"))
        # The target is checked like any socket: in a directory others can write, refused.
        loose = self.dir / "loose"
        loose.mkdir()
        self.listener_in(loose)
        loose.chmod(0o777)
        (self.dir / "to-loose.sock").symlink_to(loose / "default.sock")
        with self.assertRaises(kited.UntrustedSocket) as caught:
            socket_rules.check_socket_path(str(self.dir / "to-loose.sock"))
        self.assertIn("can be written by other users", str(caught.exception))
        # A loop ends.
        (self.dir / "loop.sock").symlink_to("loop.sock")
        with self.assertRaises(kited.UntrustedSocket) as caught:
            socket_rules.check_socket_path(str(self.dir / "loop.sock"))
        self.assertIn("symbolic links in a row", str(caught.exception))

    @unittest.skipUnless(
        os.geteuid() == 0 or os.environ.get("CI") == "true",
        "giving a link to another user needs root (under CI=true it runs, and fails without)",
    )
    def test_a_link_another_user_owns_is_refused(self) -> None:
        real = self.dir / "real"
        real.mkdir(mode=0o700)
        listener = self.listener_in(real)
        link = self.dir / "theirs.sock"
        link.symlink_to(real / "default.sock")
        os.lchown(link, 65534, 65534)
        with self.assertRaises(kited.UntrustedSocket) as caught:
            kited.get_token(socket=str(link))
        self.assertIn("belongs to uid 65534", str(caught.exception))
        self.assert_never_connected(listener)


class WithDaemon(unittest.TestCase):
    """A fresh kite-sim and kited for each test."""

    def setUp(self) -> None:
        self.sim = Sim.start()
        self.addCleanup(self.sim.stop)
        self.daemon = Kited.start(self.sim)
        self.addCleanup(self.daemon.stop)
        clean_env(self)

    def profile_calls(self) -> list:
        return self.sim.calls("/user/profile")

    def live(self, **kwargs: object) -> "kited.LiveKiteConnect":
        kite = kited.kite(socket=self.daemon.socket, root=self.sim.root, **kwargs)
        self.addCleanup(kite.close)
        return kite

    def wait_for_token_change(self, kite: "kited.LiveKiteConnect", old: str) -> str:
        return eventually(
            "the client's access_token to change",
            lambda: kite.access_token if kite.access_token != old else None,
            timeout=ROTATION_DEADLINE,
        )


class TokensFromKited(WithDaemon):
    def test_login_required_before_any_login(self) -> None:
        with self.assertRaises(kited.LoginRequired) as caught:
            kited.get_token(socket=self.daemon.socket)
        self.assertEqual(caught.exception.kind, "login_required")
        self.assertIn("log in", str(caught.exception))
        self.assertIsInstance(caught.exception, kited.KitedError)

    def test_get_token_and_session_after_a_login(self) -> None:
        self.daemon.login()
        issued = self.sim.tokens()
        self.assertEqual(len(issued), 1)
        token = kited.get_token(socket=self.daemon.socket)
        self.assertEqual(token, issued[0])
        session = kited.session(socket=self.daemon.socket)
        self.assertEqual(session.access_token, token)
        self.assertEqual(session.api_key, self.sim.api_key)
        self.assertIsNotNone(session.expires_at.tzinfo)
        self.assertGreater(session.expires_at, datetime.now(timezone.utc))
        for shown in (repr(session), str(session)):
            self.assertNotIn(token, shown)
            self.assertNotIn(token[:8], shown)
            self.assertIn(self.sim.api_key, shown)

    def test_through_the_users_own_link_to_the_socket(self) -> None:
        self.daemon.login()
        links = tempfile.TemporaryDirectory(prefix="kited-py-link-")
        self.addCleanup(links.cleanup)
        link = Path(links.name) / "kited.sock"
        link.symlink_to(self.daemon.socket)
        self.assertEqual(kited.get_token(socket=str(link)), self.sim.tokens()[0])

    def test_found_through_xdg_runtime_dir_and_the_profile(self) -> None:
        self.daemon.login()
        os.environ["XDG_RUNTIME_DIR"] = str(self.daemon.run_dir)
        self.assertEqual(kited.get_token(), self.sim.tokens()[0])
        os.environ["KITED_PROFILE"] = "other"
        with self.assertRaises(kited.NotRunning) as caught:
            kited.get_token()
        self.assertIn("other.sock", str(caught.exception))
        self.assertEqual(kited.get_token(profile="default"), self.sim.tokens()[0])

    def test_wait_blocks_until_someone_logs_in(self) -> None:
        got: dict = {}

        def waiter() -> None:
            try:
                got["token"] = kited.get_token(socket=self.daemon.socket, wait=20)
            except Exception as e:  # reported below
                got["error"] = e

        thread = threading.Thread(target=waiter)
        thread.start()
        # Let the waiter reach kited first; were it slower, the test would only be weaker (the
        # login would come first), never wrongly red.
        time.sleep(0.2)
        self.assertTrue(thread.is_alive(), got)
        self.daemon.login()
        thread.join(20)
        self.assertEqual(got, {"token": self.sim.tokens()[0]})


class KeptCurrent(WithDaemon):
    def setUp(self) -> None:
        super().setUp()
        self.daemon.login()

    def test_official_client_follows_a_new_login(self) -> None:
        kite = self.live()
        self.assertIsInstance(kite, __import__("kiteconnect").KiteConnect)
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        old = kite.access_token
        self.daemon.login()
        new = self.wait_for_token_change(kite, old)
        self.assertEqual(new, kited.get_token(socket=self.daemon.socket))
        self.sim.kill(old)
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        last = self.profile_calls()[-1]
        self.assertEqual(last["authorization"], f"token {self.sim.api_key}:{new}")
        self.assertEqual(last["status"], 200)

    def test_a_kited_restart_under_a_running_client(self) -> None:
        kite = self.live()
        old = kite.access_token
        self.daemon.restart()
        self.daemon.login()
        new = self.wait_for_token_change(kite, old)
        self.assertEqual(new, kited.get_token(socket=self.daemon.socket))
        self.assertTrue(kite.following)
        self.sim.kill(old)
        self.assertEqual(kite.profile()["user_id"], "AB1234")

    def test_a_login_while_kited_was_down_is_caught_on_reconnect(self) -> None:
        kite = self.live()
        old = kite.access_token
        # kited moves to another socket and a login happens there: the client sees no daemon
        # and no event, so only comparing tokens when it reconnects can catch the new one.
        elsewhere = str(self.daemon.dir / "elsewhere.sock")
        self.daemon.restart(socket_path=elsewhere)
        self.daemon.exchange()
        new = kited.get_token(socket=elsewhere)
        self.assertNotEqual(new, old)
        self.assertEqual(kite.access_token, old)
        self.daemon.restart()
        self.assertEqual(self.wait_for_token_change(kite, old), new)

    def test_a_failed_call_is_never_retried(self) -> None:
        import kiteconnect.exceptions as kite_errors

        kite = self.live()
        before = len(self.profile_calls())
        self.sim.control("fail", status="503", count="1")
        with self.assertRaises(kite_errors.NetworkException):
            kite.profile()
        self.assertEqual(len(self.profile_calls()), before + 1)
        # A token Kite refuses: one call, Kite's own exception, no second attempt.
        self.sim.kill(kite.access_token)
        with self.assertRaises(kite_errors.TokenException):
            kite.profile()
        self.assertEqual(len(self.profile_calls()), before + 2)

    def test_close_stops_the_thread_and_the_expiry_hook_rereads_the_token(self) -> None:
        import kiteconnect.exceptions as kite_errors

        kite = self.live()
        hook_runs = []
        kite.set_session_expiry_hook(lambda: hook_runs.append(kite.access_token))
        self.assertTrue(kite.following)
        kite.close()
        self.assertFalse(kite.following)
        old = kite.access_token
        self.daemon.login()
        new = kited.get_token(socket=self.daemon.socket)
        self.assertNotEqual(new, old)
        # Bounded check that nothing follows any more: well beyond the rotation time seen live.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            self.assertEqual(kite.access_token, old)
            time.sleep(0.02)
        # Kite refuses the old token: the hook re-reads kited's, the call itself is not retried.
        self.sim.kill(old)
        before = len(self.profile_calls())
        with self.assertRaises(kite_errors.TokenException):
            kite.profile()
        self.assertEqual(len(self.profile_calls()), before + 1)
        self.assertEqual(kite.access_token, new)
        self.assertEqual(hook_runs, [new])
        self.assertEqual(kite.profile()["user_id"], "AB1234")
        kite.close()  # twice is harmless


if __name__ == "__main__":
    unittest.main()
