"""The audit trail: append-only events, each chained to the one before by a keyed hash.

Every event records who, what (the event), where (its target: a checkpoint, a run, a host),
when (UTC) and details (JSON). Its hash is an HMAC-SHA256, under the trail's key, of all of that and
the previous event's hash. The key lives apart from the state directory (raydeploy/audit_keys.py), so
whoever can write only the state directory cannot make an edited event's hash again. The newest
event's number and hash are kept beside the key and in the state directory (`audit.head`): `verify()`
finds an edited event (its hash no longer matches), an inserted or deleted one (the chain or the
sequence breaks), and deleted newest events (a head is ahead of the table). An anchor (an event's
number and hash, copied elsewhere with `raydeploy audit --head`) also catches a rewrite by someone who
has the key. Free text from operators or hosts lives only inside the JSON details, so it cannot forge
a line of the export.

A trail written before keys (plain SHA-256, no trail id) is sealed the first time it is opened: its
chain is checked, every hash is made again with a new key, and an "audit trail sealed" event records
how many events were sealed, the old head and every problem the old chain had.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raydeploy.audit_keys import AuditKeyError, TrailKey, create_key, read_head, trails_made_for, write_head

__all__ = ["AuditKeyError", "AuditTrail", "Event", "event_hash", "legacy_event_hash", "now_utc"]

GENESIS = "0" * 64
SEALED = "audit trail sealed"
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
CREATE TABLE IF NOT EXISTS audit_meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
COLUMNS = "seq, at, actor, event, target, details, prev_hash, hash"
Row = tuple[int, str, str, str, str, str, str, str]


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


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"uid {os.getuid()}"


def event_body(seq: int, at: str, actor: str, event: str, target: str, details: str, prev_hash: str) -> bytes:
    return json.dumps([seq, at, actor, event, target, details, prev_hash], ensure_ascii=True).encode()


def event_hash(key: bytes, seq: int, at: str, actor: str, event: str, target: str, details: str, prev_hash: str) -> str:
    return hmac.new(key, event_body(seq, at, actor, event, target, details, prev_hash), hashlib.sha256).hexdigest()


def legacy_event_hash(seq: int, at: str, actor: str, event: str, target: str, details: str, prev_hash: str) -> str:
    """The hash of trails written before keys: anyone can compute it, so it proves nothing on its own."""
    return hashlib.sha256(event_body(seq, at, actor, event, target, details, prev_hash)).hexdigest()


def chain_problems(rows: list[Row], digest_of: Callable[[Row], str] | None) -> list[str]:
    """Breaks in the sequence and the chain; with DIGEST_OF, events whose content does not match their hash."""
    problems = []
    previous_seq, previous_hash = 0, GENESIS
    for row in rows:
        seq, prev_hash, digest = row[0], row[6], row[7]
        if seq != previous_seq + 1:
            problems.append(f"event {seq}: follows event {previous_seq}; events in between were deleted")
        if prev_hash != previous_hash:
            problems.append(f"event {seq}: does not chain to the event before it (inserted, or one deleted)")
        if digest_of is not None and not hmac.compare_digest(digest_of(row), digest):
            problems.append(f"event {seq}: its content does not match its hash (edited)")
        previous_seq, previous_hash = seq, digest
    return problems


def head_problems(path: Path, name: str, rows: list[Row]) -> list[str]:
    """What the head in PATH (called NAME) says against the table's newest event."""
    last_seq, last_hash = (rows[-1][0], rows[-1][7]) if rows else (0, GENESIS)
    head = read_head(path)
    if head is None:
        return [f"{name} ({path}) is missing: the trail cannot be checked for deleted newest events"] if rows else []
    if head[0] < 0:
        return [f"{name} ({path}) is not a head (SEQ HASH)"]
    if head[0] > last_seq:
        return [f"the trail ends at event {last_seq} but event {head[0]} was recorded ({name}): newest events deleted"]
    if head[0] == last_seq and head[1] != last_hash:
        return [f"event {last_seq}: differs from the one recorded as newest ({name})"]
    return []


def sealed_evidence(rows: list[Row]) -> list[str]:
    """What the seal events say was wrong before the trail had a key: never dropped, so always reported."""
    problems = []
    for seq, _at, _actor, event, _target, details, _prev, _hash in rows:
        if event != SEALED:
            continue
        recorded = json.loads(details)
        problems += [f"event {seq}: before the trail was sealed, {p}" for p in recorded.get("old_problems", [])]
        if recorded.get("earlier_trails"):
            problems.append(
                f"event {seq}: this state directory had a keyed trail before ({', '.join(recorded['earlier_trails'])}):"
                " its id was removed or the directory replaced, and the trail sealed again"
            )
    return problems


def anchor_problems(rows: list[Row], anchors: Iterable[tuple[int, str]]) -> list[str]:
    hashes = {row[0]: row[7] for row in rows}
    problems = []
    for seq, expected in anchors:
        found = hashes.get(seq)
        if found is None:
            problems.append(f"anchor {seq}: the trail has no event {seq} any more (deleted)")
        elif found != expected:
            problems.append(
                f"anchor {seq}: event {seq}'s hash is {found}, the anchor says {expected}: "
                f"event {seq} or one before it was rewritten since the anchor was taken"
            )
    return problems


class AuditTrail:
    """The audit table in the state database; its key and a head beside it, and a head file in the state directory."""

    def __init__(self, connection: sqlite3.Connection, head_file: Path):
        self.connection = connection
        self.head_file = head_file
        # The heads before the first event added inside a caller's transaction: put back if it rolls back.
        self._heads_before: tuple[TrailKey, tuple[int, str] | None] | None = None
        # Told each event inside its transaction (the webhook outbox queues it there: both or neither).
        self.listeners: list[Callable[[sqlite3.Connection, Event], object]] = []
        connection.executescript(SCHEMA)
        if self._trail_id() is None:
            self._seal()

    def append(self, actor: str, event: str, target: str = "", **details: Any) -> Event:
        """Record one event (inside the caller's transaction when there is one); AuditKeyError without the key."""
        text = json.dumps(details, sort_keys=True, ensure_ascii=True, default=str)
        # BEGIN IMMEDIATE: another process (the CLI beside the API) cannot read the same last event
        # between our read and our insert, so the chain never forks; the heads are written under
        # the same lock, so they never go back to an older event.
        own = not self.connection.in_transaction
        if own:
            self.connection.execute("BEGIN IMMEDIATE")
        trail, previous = None, None
        try:
            trail = self.key_of_trail()
            key = trail.read()
            if key is None:
                raise AuditKeyError(trail.missing())
            previous = self.head()
            record = self._insert(trail, key, previous, (actor, event, target, text))
            added = Event(record[0], record[1], actor, event, target, details, record[6], record[7])
            for listener in self.listeners:
                listener(self.connection, added)
            if own:
                self.connection.execute("COMMIT")
            elif self._heads_before is None:
                self._heads_before = (trail, previous)
        except BaseException:
            if own and self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
                if trail is not None:
                    self._restore_heads(trail, previous)
            raise
        return added

    def _insert(self, trail: TrailKey, key: bytes, previous: tuple[int, str] | None, what: tuple) -> Row:
        seq, prev = (previous[0] + 1, previous[1]) if previous else (1, GENESIS)
        actor, event, target, text = what
        at = now_utc()
        row = (seq, at, actor, event, target, text, prev, event_hash(key, seq, at, actor, event, target, text, prev))
        self.connection.execute(f"INSERT INTO audit ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", row)
        write_head(self.head_file, seq, row[7])
        trail.write_head(seq, row[7])
        return row

    def _restore_heads(self, trail: TrailKey, previous: tuple[int, str] | None) -> None:
        for path in (self.head_file, trail.head_file):
            # Best effort: the error that brought us here is the one to tell.
            with contextlib.suppress(OSError):
                if previous is None:
                    path.unlink(missing_ok=True)
                else:
                    write_head(path, *previous)

    def transaction_ended(self, committed: bool) -> None:
        """A caller's transaction ended: when it rolled back, the head files go back to where they were
        before the events it added (they are written as each event is added)."""
        before, self._heads_before = self._heads_before, None
        if before is not None and not committed:
            self._restore_heads(*before)

    def _trail_id(self) -> str | None:
        row = self.connection.execute("SELECT value FROM audit_meta WHERE name='trail_id'").fetchone()
        return row[0] if row else None

    def key_of_trail(self) -> TrailKey:
        return TrailKey(self._trail_id() or "")

    def _rows(self) -> list[Row]:
        return self.connection.execute(f"SELECT {COLUMNS} FROM audit ORDER BY seq").fetchall()

    def head(self) -> tuple[int, str] | None:
        """The newest event's number and hash: what an anchor kept elsewhere records."""
        row = self.connection.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    def events(self, limit: int | None = None) -> list[Event]:
        rows = self._rows()
        if limit is not None:
            rows = rows[-limit:]
        return [Event(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify(self, anchors: Iterable[tuple[int, str]] = ()) -> list[str]:
        """Every break in the trail, as a sentence; empty when it is intact (and matches every ANCHOR (seq, hash))."""
        rows = self._rows()
        trail = self.key_of_trail()
        key = trail.read()
        problems = [] if key else [trail.missing()]
        digest_of = (lambda row: event_hash(key, *row[:7])) if key else None
        problems += chain_problems(rows, digest_of)
        problems += head_problems(self.head_file, "the head file in the state directory", rows)
        if key:
            problems += head_problems(trail.head_file, "the head kept beside the key", rows)
        problems += sealed_evidence(rows)
        return problems + anchor_problems(rows, anchors)

    def _seal(self) -> None:
        """Give a trail without an id (written before keys, or new) an id and a key; rehash its events
        under the key and record, in an "audit trail sealed" event, what its old chain looked like."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            if self._trail_id() is None:  # another process may have sealed it while we waited
                self._seal_locked()
            self.connection.execute("COMMIT")
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise

    def _seal_locked(self) -> None:
        rows = self._rows()
        old_problems = chain_problems(rows, lambda row: legacy_event_hash(*row[:7]))
        old_problems += head_problems(self.head_file, "the head file in the state directory", rows)
        state_dir = self.head_file.parent.resolve()
        earlier = trails_made_for(state_dir)
        trail = create_key(state_dir)
        key = trail.read()
        if key is None:
            raise AuditKeyError(f"the key just written to {trail.path} cannot be read back")
        self.connection.execute("INSERT INTO audit_meta (name, value) VALUES ('trail_id', ?)", (trail.trail_id,))
        previous = None
        for row in rows:
            prev = previous[1] if previous else GENESIS
            digest = event_hash(key, *row[:6], prev)
            self.connection.execute("UPDATE audit SET prev_hash=?, hash=? WHERE seq=?", (prev, digest, row[0]))
            previous = (row[0], digest)
        # A new state directory where an old one was deleted starts afresh: nothing left to check there
        if rows or old_problems:
            details = {
                "events_sealed": len(rows),
                "old_head": f"{rows[-1][0]} {rows[-1][7]}" if rows else "",
                "old_problems": old_problems,
                "earlier_trails": earlier,
            }
            text = json.dumps(details, sort_keys=True, ensure_ascii=True)
            self._insert(trail, key, previous, (os_user(), SEALED, str(state_dir), text))
