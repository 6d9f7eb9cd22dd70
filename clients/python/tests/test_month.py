"""A month of trading days in one test: a bot loop on the official Python client, running all
the time, across 20 logins. Before each login the simulator kills the token in use (as Kite does
at the daily cutoff, or when the user logs in elsewhere), so the bot's calls fail until the new
login reaches it through the library. Counted: calls that still fail more than 100 ms after a
login answered (0 allowed), and restarts of the bot (0 allowed: it is one thread, one client
object, for the whole month).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import unittest
from typing import List

from daemon_fixture import Kited, Sim

import kited

#: Trading days in the month.
LOGINS = int(os.environ.get("KITED_MONTH_LOGINS", "20"))
#: The goal: a running program uses the new token within 100 ms of the login.
GRACE_SECS = 0.100
#: How long one day may take to reach a successful call after its login.
DAY_DEADLINE = 10.0


class AMonthOfLogins(unittest.TestCase):
    def setUp(self) -> None:
        self.sim = Sim.start()
        self.addCleanup(self.sim.stop)
        self.daemon = Kited.start(self.sim)
        self.addCleanup(self.daemon.stop)
        for name in ("KITED_SOCKET", "KITED_PROFILE", "KITED_REDIS_URL"):
            os.environ.pop(name, None)

    def test_a_bot_on_the_official_client_never_keeps_a_dead_token(self) -> None:
        from kiteconnect.exceptions import TokenException

        self.daemon.login()
        kite = kited.kite(socket=self.daemon.socket, root=self.sim.root)
        self.addCleanup(kite.close)

        stop = threading.Event()
        lock = threading.Lock()
        failures: List[float] = []
        successes: List[float] = []
        bot_starts = []

        def bot() -> None:
            bot_starts.append(time.monotonic())
            while not stop.is_set():
                try:
                    kite.profile()
                    at = time.monotonic()
                    with lock:
                        successes.append(at)
                except TokenException:
                    at = time.monotonic()
                    with lock:
                        failures.append(at)
                    # A real bot would back off a little; so does this one.
                    time.sleep(0.005)

        thread = threading.Thread(target=bot, name="bot", daemon=True)
        thread.start()
        logins: List[float] = []
        kills: List[float] = []
        for day in range(LOGINS):
            kills.append(time.monotonic())
            self.sim.kill(kite.access_token)
            self.daemon.login()
            answered = time.monotonic()
            logins.append(answered)
            deadline = answered + DAY_DEADLINE
            while True:
                with lock:
                    if successes and successes[-1] > answered:
                        break
                self.assertLess(time.monotonic(), deadline, f"day {day + 1}: no successful call")
                time.sleep(0.001)
        stop.set()
        thread.join(timeout=10)

        # Each day's window runs from its login to the next day's kill: a failure inside it more
        # than GRACE_SECS after the login is a call made with a token the library should have
        # replaced. Failures between a kill and its login are expected (no valid token exists).
        ends = kills[1:] + [float("inf")]
        late = [
            round((at - login) * 1000, 1)
            for at in failures
            for login, end in zip(logins, ends)
            if login + GRACE_SECS < at < end
        ]
        expected = len([at for at in failures if not any(lo <= at < end for lo, end in zip(logins, ends))])
        sys.stderr.write(
            f"\nmonth: {LOGINS} logins, {len(successes)} calls ok, {len(failures)} failed "
            f"({expected} between a kill and its login), {len(late)} failed more than "
            f"{GRACE_SECS * 1000:.0f} ms after a login, {len(bot_starts) - 1} restarts\n"
        )
        self.assertEqual(late, [], "calls failed with a stale token long after a login")
        self.assertEqual(len(bot_starts), 1, "the bot was restarted")
        self.assertEqual(len(logins), LOGINS)


if __name__ == "__main__":
    unittest.main()
