"""The wrapper's state directory: a SQLite database of runs, results and approvals, logs, the run lock.

Layout of a state directory (default `.raydeploy/` beside the inventory; `--state-dir` or
RAYDEPLOY_STATE_DIR moves it):

    state.db          runs, per checkpoint per host per operation results, approvals, audit trail
    audit.head        the newest audit event's number and hash (see raydeploy/audit.py; the trail's key, and
                      a head beside it, live apart from this directory: raydeploy/audit_keys.py)
    webhooks.lock     held (flock) by the one process sending the webhook queue (raydeploy/webhook_delivery.py)
    run.lock          the run lock: held with flock(2) while a run lives (the kernel lets go when its process
                      dies), and JSON {lock_id, run_id, pid, hostname, started_at} naming the holder
    logs/<run>.log    everything pyinfra printed during the run
    approvals/*.json  approvals written by hand (the seed's manual path), read and recorded
    secrets/          generated secrets, 0600 (the deploys write them here, see deploys/credentials.py),
                      and each webhook endpoint's signing secret (webhook-<id>, raydeploy/webhooks.py)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raydeploy import webhook_outbox
from raydeploy.audit import AuditTrail, now_utc

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    command TEXT NOT NULL,
    inventory TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    pid INTEGER,
    checkpoints TEXT NOT NULL,
    failed_checkpoint TEXT,
    failed_hosts TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS checkpoint_runs (
    run_id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    plan_digest TEXT,
    changed INTEGER DEFAULT 0,
    failed_hosts TEXT,
    error TEXT,
    PRIMARY KEY (run_id, checkpoint)
);
CREATE TABLE IF NOT EXISTS operation_results (
    run_id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    host TEXT NOT NULL,
    operation TEXT NOT NULL,
    result TEXT NOT NULL,
    stderr TEXT
);
CREATE TABLE IF NOT EXISTS validation_results (
    run_id TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    host TEXT NOT NULL,
    check_name TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
);
-- Every host a run deployed Ray on, and whether remove-node or destroy has removed it since (reset keeps it: the
-- hosts are still out there whatever the run history says).
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    run_id TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    checkpoint TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    plan_digest TEXT NOT NULL,
    plan_summary TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    acknowledge_risks INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    used_by_run TEXT,
    closed_by TEXT,
    closed_reason TEXT
);
"""


# Lock id -> the descriptor holding its flock. Per process, as flock(2) is: the API takes a run's lock
# in the request's thread and the run's thread, with its own StateStore, gives it back.
HELD: dict[str, int] = {}


class StateError(Exception):
    """The state directory cannot be used; the message says why and what to do."""


class LockHeld(Exception):
    """Another run holds the state directory's lock; the message names it."""


@dataclass(frozen=True)
class Lock:
    """Who holds a state directory's run lock (while its process lives: the lock is flock(2)'s)."""

    lock_id: str
    run_id: str
    pid: int
    hostname: str
    started_at: str


def default_state_dir(inventory: str) -> Path:
    """RAYDEPLOY_STATE_DIR, else `.raydeploy/` beside the inventory file."""
    configured = os.environ.get("RAYDEPLOY_STATE_DIR")
    if configured:
        return Path(configured)
    return Path(inventory).resolve().parent / ".raydeploy"


class Transaction:
    """One SQLite transaction around a block of writes: all of them happen, or none.

    The connection is in autocommit mode (so audit.py can say BEGIN IMMEDIATE itself), where each
    statement would otherwise commit on its own. BEGIN IMMEDIATE takes the write lock first: another
    writer makes this one wait (the connection's timeout) instead of failing it halfway. A block
    inside a transaction already open (its caller's) is part of that transaction. ON_END(committed)
    is told how the transaction ended: the audit trail puts its head files back when events it
    added were rolled back.
    """

    own: bool  # whether this block began the transaction, and so ends it

    def __init__(self, db: sqlite3.Connection, on_end: Callable[[bool], None] | None = None):
        self.db = db
        self.on_end = on_end

    def __enter__(self) -> sqlite3.Connection:
        self.own = not self.db.in_transaction
        if self.own:
            self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if not self.own:
            return
        committed = False
        try:
            if error_type is None:
                self.db.execute("COMMIT")
                committed = True
        finally:
            # After an error, or a COMMIT that failed (some errors have ended the transaction already).
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if self.on_end is not None:
                self.on_end(committed)


class StateStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.directory / "logs").mkdir(exist_ok=True, mode=0o700)
        (self.directory / "approvals").mkdir(exist_ok=True, mode=0o700)
        path = self.directory / "state.db"
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            os.chmod(path, 0o600)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA + webhook_outbox.SCHEMA)
            self.audit = AuditTrail(self.db, self.directory / "audit.head")
            self.audit.listeners.append(lambda db, event: webhook_outbox.enqueue(db, event, self.directory))
        except sqlite3.DatabaseError as error:
            raise StateError(
                f"the state database {path} cannot be used ({error}); nothing was changed. Move it aside "
                f"(mv {path} {path}.broken) to start a new one, or point --state-dir elsewhere"
            ) from None

    def close(self) -> None:
        self.db.close()

    def transaction(self) -> Transaction:
        """`with store.transaction():` the block's writes are one transaction (see Transaction)."""
        return Transaction(self.db, self.audit.transaction_ended)

    # Runs --------------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, requested_by: str, command: str, inventory: str, fingerprint: str, checkpoints: list[str]
    ) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO runs (id, started_at, status, requested_by, command, inventory, fingerprint, pid, checkpoints)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    now_utc(),
                    "running",
                    requested_by,
                    command,
                    inventory,
                    fingerprint,
                    os.getpid(),
                    json.dumps(checkpoints),
                ),
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        failed_checkpoint: str | None = None,
        failed_hosts: list[str] | None = None,
        error: str | None = None,
    ) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished_at=?, status=?, failed_checkpoint=?, failed_hosts=?, error=? WHERE id=?",
                (now_utc(), status, failed_checkpoint, json.dumps(failed_hosts or []), error, run_id),
            )

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE id=?", (run_id,))
        return rows[0] if rows else None

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,))

    def last_run(self) -> dict[str, Any] | None:
        runs = self.runs(1)
        return runs[0] if runs else None

    def start_checkpoint(self, run_id: str, checkpoint: str, plan_digest: str | None = None) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO checkpoint_runs (run_id, checkpoint, started_at, status, plan_digest) VALUES (?,?,?,?,?)",
                (run_id, checkpoint, now_utc(), "running", plan_digest),
            )

    def finish_checkpoint(
        self,
        run_id: str,
        checkpoint: str,
        status: str,
        changed: int = 0,
        failed_hosts: list[str] | None = None,
        error: str | None = None,
    ) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE checkpoint_runs SET finished_at=?, status=?, changed=?, failed_hosts=?, error=? WHERE run_id=? AND checkpoint=?",
                (now_utc(), status, changed, json.dumps(failed_hosts or []), error, run_id, checkpoint),
            )

    def checkpoint_runs(self, run_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM checkpoint_runs WHERE run_id=? ORDER BY started_at", (run_id,))

    def last_result(self, checkpoint: str) -> dict[str, Any] | None:
        rows = self._rows(
            "SELECT * FROM checkpoint_runs WHERE checkpoint=? ORDER BY started_at DESC LIMIT 1", (checkpoint,)
        )
        return rows[0] if rows else None

    def record_operations(self, run_id: str, checkpoint: str, rows: list[tuple[str, str, str, str]]) -> None:
        """ROWS: (host, operation, result, output)."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO operation_results (run_id, checkpoint, host, operation, result, stderr) VALUES (?,?,?,?,?,?)",
                [(run_id, checkpoint, *row) for row in rows],
            )

    def operations(self, run_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM operation_results WHERE run_id=? ORDER BY rowid", (run_id,))

    def record_validation(self, run_id: str, checkpoint: str, rows: list[tuple[str, str, str, str]]) -> None:
        """ROWS: (host or "cluster", check, pass|fail|unreachable|not-deployed, detail)."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO validation_results (run_id, checkpoint, host, check_name, status, detail) VALUES (?,?,?,?,?,?)",
                [(run_id, checkpoint, *row) for row in rows],
            )

    def validations(self, run_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM validation_results WHERE run_id=? ORDER BY rowid", (run_id,))

    def log_path(self, run_id: str) -> Path:
        return self.directory / "logs" / f"{run_id}.log"

    def reset(self) -> dict[str, int]:
        """Forget runs and their results (never approvals' history or the audit trail)."""
        counts = {}
        with self.transaction():
            for table in ("validation_results", "operation_results", "checkpoint_runs", "runs"):
                counts[table] = self.db.execute(f"DELETE FROM {table}").rowcount
        for log in (self.directory / "logs").glob("*.log"):
            log.unlink()
        return counts

    # Hosts: deployed or removed ------------------------------------------------------------------

    def record_hosts(self, names: list[str], status: str, run_id: str) -> None:
        """NAMES are now STATUS ("deployed" by a ray-deployment, "removed" by remove-node, "destroyed" by destroy)."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO hosts (name, status, run_id, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET status=excluded.status, run_id=excluded.run_id, at=excluded.at",
                [(name, status, run_id, now_utc()) for name in names],
            )

    def hosts(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM hosts ORDER BY name")

    # Approvals (their rules live in raydeploy/approvals.py) ------------------------------------

    def insert_approval(self, approval: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute(
                f"INSERT INTO approvals ({', '.join(approval)}) VALUES ({', '.join('?' for _ in approval)})",
                tuple(approval.values()),
            )

    def approval(self, approval_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM approvals WHERE id=?", (approval_id,))
        return rows[0] if rows else None

    def approvals(self, checkpoint: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Approvals, newest first, of CHECKPOINT and in STATUS when given."""
        query, parameters = "SELECT * FROM approvals WHERE 1=1", []
        if checkpoint:
            query, parameters = query + " AND checkpoint=?", [*parameters, checkpoint]
        if status:
            query, parameters = query + " AND status=?", [*parameters, status]
        return self._rows(query + " ORDER BY created_at DESC", tuple(parameters))

    def close_approval(
        self, approval_id: str, status: str, closed_by: str | None = None, reason: str | None = None
    ) -> bool:
        """Move a valid approval to STATUS; False when it was not valid any more."""
        with self.transaction():
            return (
                self.db.execute(
                    "UPDATE approvals SET status=?, closed_by=?, closed_reason=? WHERE id=? AND status='valid'",
                    (status, closed_by, reason, approval_id),
                ).rowcount
                == 1
            )

    def use_approval(self, approval_id: str, run_id: str) -> bool:
        """Mark a valid approval used by RUN_ID; False when it was used or withdrawn meanwhile."""
        with self.transaction():
            return (
                self.db.execute(
                    "UPDATE approvals SET status='used', used_by_run=? WHERE id=? AND status='valid'",
                    (run_id, approval_id),
                ).rowcount
                == 1
            )

    # API tokens (their rules live in raydeploy/api/tokens.py) ----------------------------------

    def insert_token(self, token: dict[str, Any]) -> None:
        """TOKEN (id, name, role, hash, created_at, created_by) replaces a revoked token of its name."""
        with self.transaction():
            self.db.execute("DELETE FROM api_tokens WHERE name=? AND revoked_at IS NOT NULL", (token["name"],))
            self.db.execute(
                f"INSERT INTO api_tokens ({', '.join(token)}) VALUES ({', '.join('?' for _ in token)})",
                tuple(token.values()),
            )

    def active_tokens(self, name_or_id: str | None = None) -> list[dict[str, Any]]:
        if name_or_id is None:
            return self._rows("SELECT * FROM api_tokens WHERE revoked_at IS NULL ORDER BY created_at")
        return self._rows(
            "SELECT * FROM api_tokens WHERE (id=? OR name=?) AND revoked_at IS NULL", (name_or_id, name_or_id)
        )

    def tokens(self) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens ORDER BY created_at"
        )

    def revoke_token(self, token_id: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE api_tokens SET revoked_at=? WHERE id=?", (now_utc(), token_id))

    # The lock -----------------------------------------------------------------------------------

    @property
    def lock_file(self) -> Path:
        return self.directory / "run.lock"

    def current_lock(self) -> Lock | None:
        """The lock's holder while a process holds it; None when the state directory is free."""
        descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._holder()
        else:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            return None
        finally:
            os.close(descriptor)

    def acquire(self, run_id: str, actor: str) -> Lock:
        """Take the lock for RUN_ID; raise LockHeld naming the run that holds it.

        The kernel releases a dead process's lock; a run it left "running" is marked interrupted here.
        """
        descriptor = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            held = self._holder()
            raise LockHeld(
                f"run {held.run_id if held else '?'} holds the lock of {self.directory}"
                + (
                    f" (lock {held.lock_id}, pid {held.pid} on {held.hostname}, since {held.started_at})"
                    if held
                    else ""
                )
                + "; wait for it to finish, or stop that process"
            ) from None
        previous = self._holder()
        try:
            if previous is not None:
                self._interrupted(previous, actor, reason="its process ended without finishing the run")
        except BaseException:
            os.close(descriptor)  # gives the flock back: a takeover that failed must not hold the lock
            raise
        lock = Lock(uuid.uuid4().hex[:12], run_id, os.getpid(), socket.gethostname(), now_utc())
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(lock.__dict__).encode(), 0)
        HELD[lock.lock_id] = descriptor
        return lock

    def release(self, lock: Lock) -> None:
        """Give back LOCK, if this process holds it (never another run's)."""
        descriptor = HELD.pop(lock.lock_id, None)
        if descriptor is None:
            return
        os.ftruncate(descriptor, 0)
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)

    def _holder(self) -> Lock | None:
        try:
            return Lock(**json.loads(self.lock_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def _interrupted(self, held: Lock, actor: str, reason: str) -> None:
        run = self.run(held.run_id)
        if run and run["status"] in ("running", "awaiting-approval"):
            with self.transaction():  # the run and its running checkpoints end together
                self.finish_run(held.run_id, "interrupted", error=f"lock released: {reason}")
                self.db.execute(
                    "UPDATE checkpoint_runs SET status='interrupted', finished_at=? WHERE run_id=? AND status='running'",
                    (now_utc(), held.run_id),
                )
            self.audit.append(actor, "run interrupted", held.run_id, reason=reason)
        self.audit.append(actor, "lock released", held.run_id, lock_id=held.lock_id, pid=held.pid, reason=reason)

    def _rows(self, query: str, parameters: tuple = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.db.execute(query, parameters).fetchall()]
