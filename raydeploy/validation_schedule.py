"""Validation on a schedule (`raydeploy api --validate-every 5m`): each result a run, a change of verdict an event.

Each scheduled validation is recorded like a run (command `validate (scheduled)`, its checks as the
run's validation results), so the runs list of the API and the console show it. Its verdict is
"passing" or "failing" (`raydeploy validate`'s exit 0 or 1); when it differs from the previous
scheduled verdict (or the first one is failing), a `validation verdict changed` event goes to the
audit trail in the same transaction as the run's end, and so to the webhooks as
`validation.failing` or `validation.passing`. A validation never holds the run lock: it changes
nothing, and a deploy must not wait for it.
"""

from __future__ import annotations

import contextlib
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from raydeploy.state import StateStore
from raydeploy.webhook_outbox import VERDICT_CHANGED

COMMAND = "validate (scheduled)"
WHO = "raydeploy (schedule)"
DURATION = re.compile(r"^(\d+)([smhd])$")
SHORTEST = timedelta(seconds=10)


class ScheduleError(Exception):
    """The schedule's setting is wrong; the message names it and the fix."""


def parse_every(text: str) -> timedelta:
    """--validate-every TEXT as a duration (30s, 5m, 1h, 1d), at least 10 s apart."""
    match = DURATION.match(text.strip())
    if not match:
        raise ScheduleError(f"--validate-every {text!r}: give a duration like 30s, 5m, 1h or 1d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    every = timedelta(**{unit: int(match[1])})
    if every < SHORTEST:
        raise ScheduleError(
            f"--validate-every {text!r}: validations must be at least 10s apart (a full one takes ~10 s)"
        )
    return every


@dataclass(frozen=True)
class Verdict:
    """What one validation found: passing or not, and its checks as (host, check, status, detail) rows."""

    passing: bool
    rows: list[tuple[str, str, str, str]]
    error: str | None = None


def validate_inventory(inventory: str, state_dir: str) -> Verdict:
    """`raydeploy validate` on INVENTORY (every check and the smoke job)."""
    from validate.inventory import InventoryError, load
    from validate.runner import run

    try:
        report = run(load(inventory, state_dir), scope="all")
    except InventoryError as error:
        return Verdict(False, [], f"validation could not run: {error}")
    rows = [(r.host, f"{r.checkpoint}: {r.check}", r.status, r.detail) for r in report.results]
    return Verdict(report.ok, rows)


def previous_verdict(store: StateStore) -> str | None:
    row = store.db.execute(
        "SELECT status FROM runs WHERE command=? AND finished_at IS NOT NULL ORDER BY started_at DESC LIMIT 1",
        (COMMAND,),
    ).fetchone()
    return None if row is None else ("passing" if row[0] == "succeeded" else "failing")


def validate_once(store: StateStore, inventory: str, check: Callable[[], Verdict]) -> str:
    """Run CHECK as a recorded run of STORE; its verdict ("passing" or "failing")."""
    from raydeploy.plans import PlanError, fingerprint

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    try:
        inventory_print = fingerprint(inventory)
    except PlanError:
        inventory_print = "unreadable"
    before = previous_verdict(store)
    store.start_run(run_id, WHO, COMMAND, inventory, inventory_print, ["final-validation"])
    try:
        verdict = check()
    except Exception as error:  # a validation that broke is a failing one, said as such
        verdict = Verdict(False, [], f"validation broke: {type(error).__name__}: {error}")
    now = "passing" if verdict.passing else "failing"
    with store.transaction():  # the run's end and the change of verdict: both or neither
        store.record_validation(run_id, "final-validation", verdict.rows)
        failed = sorted({row[0] for row in verdict.rows if row[2] in ("fail", "unreachable")})
        store.finish_run(run_id, "succeeded" if verdict.passing else "failed", None, failed, verdict.error)
        if now != before and (before is not None or now == "failing"):
            store.audit.append(WHO, VERDICT_CHANGED, run_id, run_id=run_id, to=now, **{"from": before or "unknown"})
    return now


class Schedule:
    """A thread that validates every EVERY until stopped (the first one right away)."""

    def __init__(self, state_dir, inventory: str, every: timedelta, check: Callable[[], Verdict] | None = None):
        self.state_dir, self.inventory, self.every = state_dir, inventory, every
        self.check = check or (lambda: validate_inventory(inventory, str(state_dir)))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="scheduled validation", daemon=True)

    def loop(self) -> None:
        store = StateStore(self.state_dir)
        try:
            while not self.stopping.is_set():
                # A validation that could not be recorded (the state database busy, say) is tried at the next time.
                with contextlib.suppress(Exception):
                    validate_once(store, self.inventory, self.check)
                self.stopping.wait(self.every.total_seconds())
        finally:
            store.close()

    def start(self) -> Schedule:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
