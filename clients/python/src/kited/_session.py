"""The session a program gets (api key, access token, expiry) and the time format it arrives in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict

from ._errors import KitedError

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> datetime:
    """Parses an RFC 3339 time with offset (``2026-11-24T06:00:00+05:30``) into an aware datetime.

    ``datetime.fromisoformat`` before Python 3.11 takes neither ``Z`` nor fractions of other than
    3 or 6 digits, so those are normalised first.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    value = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], value, count=1)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise KitedError("protocol", f"not an RFC 3339 time: {text!r}") from None
    if parsed.tzinfo is None:
        raise KitedError("protocol", f"a time without an offset: {text!r}")
    return parsed


@dataclass(frozen=True, repr=False)
class Session:
    """What a Kite Connect client needs: the app's api key, today's access token, and when that
    token dies (an aware :class:`~datetime.datetime`, normally 06:00 IST).

    ``repr()`` and ``str()`` never show the access token, so a session can be logged safely.
    """

    api_key: str
    access_token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return (
            f"Session(api_key={self.api_key!r}, access_token=<redacted, "
            f"{len(self.access_token)} chars>, expires_at={self.expires_at.isoformat()!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_answer(cls, answer: Dict[str, Any]) -> "Session":
        """Builds a session from a ``get_token`` answer or the Redis value (same field names)."""
        try:
            api_key = answer["api_key"]
            token = answer["access_token"]
            expires = answer["expires_at"]
        except (KeyError, TypeError):
            raise KitedError(
                "protocol", "a token answer without api_key, access_token and expires_at"
            ) from None
        if not all(isinstance(v, str) and v for v in (api_key, token, expires)):
            raise KitedError("protocol", "a token answer with empty or non-text fields")
        return cls(api_key=api_key, access_token=token, expires_at=parse_time(expires))
