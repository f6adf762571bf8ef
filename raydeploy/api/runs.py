"""Runs the API starts in the background, and any run's log as a live stream of server-sent events.

The events are framed, kept alive with heartbeats and stopped when the client leaves or the server
shuts down by sse-starlette's EventSourceResponse; this module only says what the events are.

A run started over HTTP is the wrapper's own `runner.deploy`, in a thread of the API process,
with the same state directory, lock, approvals and audit trail as `raydeploy deploy`: the lock is
taken before the 202 answer (so a second request, or a CLI run, gets 409 / "holds the lock"), and
the run is recorded before the answer leaves, so `GET /runs/{id}` finds it at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from sse_starlette import EventSourceResponse, ServerSentEvent

from raydeploy import runner
from raydeploy.api.errors import ApiError
from raydeploy.state import Lock, StateStore

POLL_S = 0.5
HEARTBEAT_S = 15.0
# Lines end in LF alone, as they always have here; clients that split events on a blank line keep working.
SEPARATOR = "\n"
FINISHED = ("succeeded", "failed", "awaiting-approval", "interrupted", "rejected")


def start(
    inventory: str,
    state_dir: Path,
    lock: Lock,
    checkpoint: str,
    requested_by: str,
    separation_of_duties: bool,
    data: dict[str, str] | None = None,
    run_with: Callable[[runner.RunOptions, Lock], str] = runner.deploy,
    command: str | None = None,
    fail_percent: int | None = None,
) -> None:
    """Run CHECKPOINT (an action: with DATA, its arguments, through RUN_WITH) in a thread under LOCK
    (taken by the caller); return once the run is recorded. A run that ended before it was recorded
    (an inventory that cannot be read, say) answers 503 RUN_NOT_STARTED with why: no 202 for a run that
    never existed."""
    recorded = threading.Event()
    crashed: list[str] = []

    def work() -> None:
        store = StateStore(state_dir)  # its own connection: SQLite connections are not shared across threads
        options = runner.RunOptions(
            inventory=inventory,
            store=store,
            checkpoints=[checkpoint],
            requested_by=requested_by,
            command=command or f"POST /api/v1/checkpoints/{checkpoint}",
            interactive=False,
            data=dict(data or {}),
            separation_of_duties=separation_of_duties,
            fail_percent=fail_percent,
            echo=lambda _line: recorded.set(),
        )
        try:
            run_with(options, lock)
        except runner.RunStopped as stopped:  # recorded in the run and the audit trail, once it began
            crashed.append(stopped.message)
        except Exception as error:  # recorded as failed by runner.deploy; never lost
            crashed.append(f"{type(error).__name__}: {error}")
            store.audit.append(requested_by, "api run crashed", lock.run_id, error=crashed[-1])
        finally:
            store.release(lock)  # a no-op when the run gave it back; a run that never began must too
            recorded.set()
            store.close()

    # pyinfra's child processes die with the thread that started them (PR_SET_PDEATHSIG): this thread
    # lives until the run ends, so they live exactly as long as the run.
    threading.Thread(target=work, name=f"run-{lock.run_id}", daemon=True).start()
    recorded.wait(timeout=30)
    if crashed and StateStore(state_dir).run(lock.run_id) is None:
        raise ApiError(503, "RUN_NOT_STARTED", f"the run did not start: {crashed[0]}"[:4000])


def _lines(path: Path, offset: int) -> tuple[list[tuple[int, str]], int]:
    """Complete lines of PATH from byte OFFSET on: [(offset after the line, line)], new offset."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read(1024 * 1024)
    except FileNotFoundError:
        return [], offset
    lines = []
    position = offset
    for raw in data.splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break  # the rest of a line still being written
        position += len(raw)
        lines.append((position, raw.rstrip(b"\r\n").decode("utf-8", errors="replace")))
    return lines, position


def _ended(store: StateStore, run_id: str) -> str | None:
    """The run's final status, or None while it runs (a 'running' run nobody holds the lock for has ended)."""
    run = store.run(run_id)
    if run is None:
        return "unknown"
    if run["status"] in FINISHED:
        return run["status"]
    lock = store.current_lock()
    if lock is None or lock.run_id != run_id:
        return "interrupted"
    return None


async def stream(state_dir: Path, run_id: str, offset: int = 0) -> AsyncIterator[ServerSentEvent]:
    """The log of RUN_ID as events: `log` events (id = byte offset after the line, resumable with
    Last-Event-ID), then one `end` event with the run's status."""
    store = StateStore(state_dir)
    path = store.log_path(run_id)
    try:
        while True:
            ended = await asyncio.to_thread(_ended, store, run_id)
            lines, offset = await asyncio.to_thread(_lines, path, offset)
            for position, line in lines:
                yield ServerSentEvent(line, id=str(position), event="log", sep=SEPARATOR)
            if lines:
                continue
            if ended is not None:
                run = store.run(run_id) or {}
                body = {"run_id": run_id, "status": ended, "error": run.get("error")}
                yield ServerSentEvent(json.dumps(body), event="end", sep=SEPARATOR)
                return
            await asyncio.sleep(POLL_S)
    finally:
        store.close()


def log_response(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """EVENTS (a run's stream) as a response, with a comment as heartbeat every HEARTBEAT_S."""
    return EventSourceResponse(
        events,
        ping=HEARTBEAT_S,
        ping_message_factory=lambda: ServerSentEvent(comment="still running", sep=SEPARATOR),
        sep=SEPARATOR,
    )
