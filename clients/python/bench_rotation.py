#!/usr/bin/env python3
"""How long a new login takes to reach a running ``kited.kite()`` client, over many logins.

Starts kite-sim and kited (``$KITED_BIN_DIR``, default ``target/debug``; use a release build for
figures worth quoting), makes one live client, then logs in ``--logins`` times. For each login it
records when kited finished answering the login (the end of the ``exchange`` answer on the socket,
or with ``--via callback`` the end of the browser's callback page) and when the client's
``access_token`` changed, polling it every 0.2 ms. Prints JSON: the samples in milliseconds
(``samples_ms``, measured from that answer; a negative value means the client had the token before
the answer reached the caller) and from the start of the login request (``from_request_ms``),
with p50/p99 of each. Needs this package and kiteconnect installed (``run-tests`` makes such a
virtualenv in ``target/py-venv``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

import kited  # noqa: E402
from daemon_fixture import Kited, Sim, bin_dir, http_get  # noqa: E402

#: How often the client's token is looked at: fine enough for millisecond figures, coarse enough
#: to leave the follower thread the interpreter.
POLL_SECS = 0.0002
#: A login that has not reached the client after this long is a failure, not a slow sample.
DEADLINE_SECS = 10.0


def percentile(samples: List[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summary(samples: List[float]) -> Dict[str, float]:
    return {
        "p50": round(percentile(samples, 50), 3),
        "p99": round(percentile(samples, 99), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
        "mean": round(statistics.fmean(samples), 3),
    }


def login_via_callback(daemon: Kited) -> float:
    """Starts a browser login up to the redirect, then times the callback; returns its start."""
    url = daemon.request({"op": "login_url"})["login_url"]
    status, headers, _ = http_get(url)
    assert status == 302, status
    started = time.perf_counter()
    status, _, page = http_get(headers["location"])
    assert status == 200 and "Logged in as" in page, page
    return started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=50)
    parser.add_argument("--via", choices=["exchange", "callback"], default="exchange",
                        help="how each login reaches kited (default: the socket's exchange)")
    args = parser.parse_args()

    sim = Sim.start()
    daemon = None
    kite = None
    try:
        daemon = Kited.start(sim)
        daemon.login()
        kite = kited.kite(socket=daemon.socket, root=sim.root)
        from_answer: List[float] = []
        from_request: List[float] = []
        for i in range(args.logins):
            old = kite.access_token
            if args.via == "exchange":
                request_token = sim.control("request-token")["request_token"]
                started = time.perf_counter()
                answer = daemon.request({"op": "exchange", "request_token": request_token})
                answered = time.perf_counter()
                assert answer.get("ok"), answer
            else:
                started = login_via_callback(daemon)
                answered = time.perf_counter()
            while kite.access_token == old:
                if time.perf_counter() - answered > DEADLINE_SECS:
                    raise SystemExit(f"login {i + 1}: the client kept the old token {DEADLINE_SECS}s")
                time.sleep(POLL_SECS)
            changed = time.perf_counter()
            from_answer.append((changed - answered) * 1000)
            from_request.append((changed - started) * 1000)
        print(json.dumps({
            "what": "login answered by kited -> kited.kite() client's access_token changed",
            "via": args.via,
            "logins": args.logins,
            "bin_dir": str(bin_dir()),
            "samples_ms": [round(s, 3) for s in from_answer],
            "from_request_ms": [round(s, 3) for s in from_request],
            "summary_ms": summary(from_answer),
            "from_request_summary_ms": summary(from_request),
        }, indent=1))
        return 0
    finally:
        if kite is not None:
            kite.close()
        if daemon is not None:
            daemon.stop()
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
