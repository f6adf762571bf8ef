"""Failed authentication: throttled per client address, and recorded as one audit event per burst.

A token is 256 random bits, so guessing one is not the threat; what each failure costs is (a database
write, an audit row). Each client address may fail `limit` times per WINDOW_S; after that its failures
are answered 429 with Retry-After until the moving window lets it try again. A valid token is never
refused for its address's failures: clients behind one NAT or proxy would lock each other out.

The audit trail keeps every failure without a row for each. The first failure of a (client, reason) in
a window is an event at once (`count` 1); the others in that window are counted and recorded as one
event (`count` N, `since`, `until`, how many were `throttled`) once the window has passed: at the next
failure, at the server's periodic flush, or when it stops. Summing `count` gives every failure. At most
MAX_CLIENTS addresses are tracked per window; failures of any more are counted under client "(other)".
What an event keeps from a request is capped and cleaned (request_text): the path, the User-Agent.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from raydeploy.audit import now_utc
from raydeploy.state import StateStore

WINDOW_S = 60
DEFAULT_LIMIT = 20  # failed authentications per client address per WINDOW_S
MAX_CLIENTS = 100
OTHER = "(other)"
MAX_PATH_CHARS = 200
MAX_HEADER_CHARS = 120
EVENT = "api authentication failed"


def request_text(text: str | None, limit: int) -> str:
    """TEXT from a request as an audit event keeps it: printable ASCII, at most LIMIT characters."""
    text = text or ""
    cleaned = re.sub(r"[^\x20-\x7e]", "?", text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


@dataclass
class Burst:
    """Failures of one (client, reason) in one window after the event that opened it."""

    client: str
    reason: str
    path: str
    opened: float
    since: str
    until: str = ""
    count: int = 0
    throttled: int = 0

    def summary(self) -> dict:
        return {
            "client": self.client,
            "reason": self.reason,
            "count": self.count,
            "since": self.since,
            "until": self.until,
            "throttled": self.throttled,
        }


class FailedAuth:
    """The per-address throttle and the open bursts of one API process."""

    def __init__(self, limit: int = DEFAULT_LIMIT, window_s: int = WINDOW_S, clock=time.monotonic):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._rate = RateLimitItemPerSecond(limit, window_s)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._bursts: dict[tuple[str, str], Burst] = {}
        self._lock = threading.Lock()

    def failed(self, store: StateStore, client: str, reason: str, path: str, user_agent: str | None) -> int | None:
        """Count one failure of CLIENT; the seconds it must wait when it is throttled now, else None."""
        wait = None if self._limiter.hit(self._rate, client) else self._retry_after_s(client)
        with self._lock:
            due = self._take(lambda burst: self.clock() - burst.opened >= self.window_s)
            clients = {known for known, _ in self._bursts}
            key = (client if client in clients or len(clients) < MAX_CLIENTS else OTHER, reason)
            burst = self._bursts.get(key)
            if burst is not None:
                burst.count, burst.until = burst.count + 1, now_utc()
                burst.throttled += wait is not None
            else:
                self._bursts[key] = Burst(key[0], reason, request_text(path, MAX_PATH_CHARS), self.clock(), now_utc())
        self._record(store, due)
        if burst is None:
            store.audit.append(
                "anonymous",
                EVENT,
                request_text(path, MAX_PATH_CHARS),
                client=key[0],
                reason=reason,
                user_agent=request_text(user_agent, MAX_HEADER_CHARS),
                count=1,
                throttled=wait is not None,
            )
        return wait

    def flush(self, store: StateStore, everything: bool = False) -> int:
        """Record the bursts whose window has passed (EVERYTHING: all of them); how many events were written."""
        with self._lock:
            due = self._take(lambda burst: everything or self.clock() - burst.opened >= self.window_s)
        return self._record(store, due)

    def _take(self, is_due) -> list[Burst]:
        due = [key for key, burst in self._bursts.items() if is_due(burst)]
        return [self._bursts.pop(key) for key in due]

    def _record(self, store: StateStore, bursts: list[Burst]) -> int:
        written = [burst for burst in bursts if burst.count]
        for burst in written:
            store.audit.append("anonymous", EVENT, burst.path, **burst.summary())
        return len(written)

    def _retry_after_s(self, client: str) -> int:
        reset_at = self._limiter.get_window_stats(self._rate, client).reset_time
        return max(1, math.ceil(reset_at - time.time()))
