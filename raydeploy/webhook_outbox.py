"""The webhook outbox: raydeploy's own events, queued for each endpoint in the transaction that records them.

Every event raydeploy has (a run started, an approval granted, a lock broken) is written once, to the
audit trail (raydeploy/audit.py). The outbox listens there: when an audit event is one a webhook
announces, a row for it and one delivery per subscribed endpoint are inserted on the same connection,
inside the same transaction as the audit event and the state change it records. They are committed
together or not at all, so an event is never lost between the state database and the queue; the
deliverer (raydeploy/webhook_delivery.py) sends the queue in order, per endpoint, and retries.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raydeploy.audit import Event, now_utc

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    format TEXT NOT NULL,
    events TEXT NOT NULL,
    cluster TEXT NOT NULL,
    console_url TEXT,
    allow_private INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    removed_at TEXT
);
CREATE TABLE IF NOT EXISTS webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
-- seq orders the deliveries of one endpoint: a delivery waits until every earlier one is done.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_code INTEGER,
    last_error TEXT,
    last_attempt_at TEXT,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    delivered_at TEXT,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (endpoint_id, status, seq);
"""

# Audit events announced as they are, by webhook type.
SIMPLE_TYPES = {
    "approval requested": "approval.requested",
    "approval granted": "approval.granted",
    "plan rejected": "approval.rejected",
    "approval expired": "approval.expired",
    "run started": "run.started",
    "run interrupted": "run.interrupted",
    "run rolled back": "run.rolled_back",
    "lock released": "lock.broken",
}
RUN_ENDINGS = {"succeeded": "run.succeeded", "failed": "run.failed"}
VERDICTS = {"failing": "validation.failing", "passing": "validation.passing"}
VERDICT_CHANGED = "validation verdict changed"
TEST_TYPE = "webhook.test"
EVENT_TYPES = (*SIMPLE_TYPES.values(), *RUN_ENDINGS.values(), *VERDICTS.values())

# Told the state directory whenever deliveries were queued there: the deliverer of this process wakes up.
QUEUED_LISTENERS: list[Callable[[Path], None]] = []


def webhook_type(event: str, details: dict[str, Any]) -> str | None:
    """The webhook type that announces audit EVENT, or None when webhooks do not announce it.

    A run that stopped to wait for an approval is announced by its `approval.requested`, not as a run's end.
    """
    if event == "run finished":
        return RUN_ENDINGS.get(str(details.get("status")))
    if event == VERDICT_CHANGED:
        return VERDICTS.get(str(details.get("to")))
    return SIMPLE_TYPES.get(event)


def subscribed(endpoint_events: str, event_type: str) -> bool:
    wanted = json.loads(endpoint_events)
    return not wanted or event_type in wanted


def enqueue(connection: sqlite3.Connection, event: Event, directory: Path) -> str | None:
    """Queue audit EVENT for every active endpoint that wants it, on CONNECTION (inside the caller's
    transaction); the webhook event's id, None when no endpoint wants it."""
    event_type = webhook_type(event.event, event.details)
    if event_type is None:
        return None
    endpoints = connection.execute("SELECT id, events FROM webhook_endpoints WHERE removed_at IS NULL").fetchall()
    wanted = [row[0] for row in endpoints if subscribed(row[1], event_type)]
    if not wanted:
        return None
    return queue(connection, directory, event_type, event.actor, event.target, event.details, wanted, event.at)


def queue(
    connection: sqlite3.Connection,
    directory: Path,
    event_type: str,
    actor: str,
    target: str,
    details: dict[str, Any],
    endpoint_ids: list[str],
    at: str | None = None,
) -> str:
    """Insert one event and a pending delivery of it for each of ENDPOINT_IDS (in DIRECTORY's state
    database); the event's id."""
    event_id, now = uuid.uuid4().hex, now_utc()
    text = json.dumps(details, sort_keys=True, ensure_ascii=True, default=str)
    connection.execute(
        "INSERT INTO webhook_events (id, type, at, actor, target, details) VALUES (?,?,?,?,?,?)",
        (event_id, event_type, at or now, actor, target, text),
    )
    connection.executemany(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, status, next_attempt_at, created_at)"
        " VALUES (?,?,'pending',?,?)",
        [(endpoint_id, event_id, now, now) for endpoint_id in endpoint_ids],
    )
    for listener in QUEUED_LISTENERS:
        listener(directory)
    return event_id
