"""The loop every wait script on a host runs: ask, decide, sleep, until ready or out of time."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def wait_until(missing_now: Callable[[], list[str]], timeout_s: float, failure: str, interval_s: float = 1.0) -> int:
    """Call MISSING_NOW every INTERVAL_S until it returns [] (0); after TIMEOUT_S print FAILURE and
    what is still missing on stderr (1)."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = missing_now()
        if not missing:
            return 0
        if time.monotonic() > deadline:
            print(f"{failure} after {timeout_s:g} s: {', '.join(missing)}", file=sys.stderr)
            return 1
        time.sleep(interval_s)
