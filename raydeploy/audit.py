"""The audit trail: append-only events, each chained to the one before by a hash.

Every event records who, what (the event), where (its target: a checkpoint, a run, a host),
when (UTC) and details (JSON). Its hash covers all of that and the previous event's hash, and the
newest event's sequence number and hash are also kept outside the table (`audit.head`): `verify()`
finds an edited event (its hash no longer matches), an inserted or deleted one (the chain or the
sequence breaks), and deleted newest events (the head file is ahead of the table). Free text from
operators or hosts lives only inside the JSON details, so it cannot forge a line of the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Event:
    seq: int
    at: str
    actor: str
    event: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def as_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, ensure_ascii=True)


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(seq: int, at: str, actor: str, event: str, target: str, details: str, prev_hash: str) -> str:
    body = json.dumps([seq, at, actor, event, target, details, prev_hash], ensure_ascii=True)
    return hashlib.sha256(body.encode()).hexdigest()


class AuditTrail:
    """The audit table in the state database, and its head file beside it."""

    def __init__(self, connection: sqlite3.Connection, head_file: Path):
        self.connection = connection
        self.head_file = head_file
        connection.executescript(SCHEMA)

    def append(self, actor: str, event: str, target: str = "", **details: Any) -> Event:
        """Record one event (inside the caller's transaction when there is one)."""
        text = json.dumps(details, sort_keys=True, ensure_ascii=True, default=str)
        # BEGIN IMMEDIATE: another process (the CLI beside the API) cannot read the same last event
        # between our read and our insert, so the chain never forks; the head file is written under
        # the same lock, so it never goes back to an older event.
        own = not self.connection.in_transaction
        if own:
            self.connection.execute("BEGIN IMMEDIATE")
        try:
            row = self.connection.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            at = now_utc()
            digest = event_hash(seq, at, actor, event, target, text, prev)
            self.connection.execute(
                "INSERT INTO audit (seq, at, actor, event, target, details, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?)",
                (seq, at, actor, event, target, text, prev, digest),
            )
            self._write_head(seq, digest)
            if own:
                self.connection.execute("COMMIT")
        except BaseException:
            if own and self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
                if row:
                    self._write_head(row[0], row[1])
            raise
        return Event(seq, at, actor, event, target, details, prev, digest)

    def _write_head(self, seq: int, digest: str) -> None:
        temporary = self.head_file.with_name(f"{self.head_file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_text(f"{seq} {digest}\n")
        temporary.replace(self.head_file)

    def events(self, limit: int | None = None) -> list[Event]:
        query = "SELECT seq, at, actor, event, target, details, prev_hash, hash FROM audit ORDER BY seq"
        rows = self.connection.execute(query).fetchall()
        if limit is not None:
            rows = rows[-limit:]
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify(self) -> list[str]:
        """Every break in the chain, as a sentence; empty when the trail is intact."""
        problems = []
        previous_seq, previous_hash = 0, GENESIS
        rows = self.connection.execute(
            "SELECT seq, at, actor, event, target, details, prev_hash, hash FROM audit ORDER BY seq"
        ).fetchall()
        for seq, at, actor, event, target, details, prev_hash, digest in rows:
            if seq != previous_seq + 1:
                problems.append(f"event {seq}: follows event {previous_seq}; events in between were deleted")
            if prev_hash != previous_hash:
                problems.append(f"event {seq}: does not chain to the event before it (inserted, or one deleted)")
            if event_hash(seq, at, actor, event, target, details, prev_hash) != digest:
                problems.append(f"event {seq}: its content does not match its hash (edited)")
            previous_seq, previous_hash = seq, digest
        if self.head_file.exists():
            head_seq, _, head_hash = self.head_file.read_text().strip().partition(" ")
            if int(head_seq) > previous_seq:
                problems.append(
                    f"the trail ends at event {previous_seq} but event {head_seq} was recorded: newest events deleted"
                )
            elif int(head_seq) == previous_seq and head_hash != previous_hash:
                problems.append(f"event {previous_seq}: differs from the one recorded as newest")
        elif rows:
            problems.append("the head file is missing: the trail cannot be checked for deleted newest events")
        return problems
