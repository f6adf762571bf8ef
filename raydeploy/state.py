"""The wrapper's state directory: a SQLite database of runs, results and approvals, logs, the run lock.

Layout of a state directory (default `.raydeploy/` beside the inventory; `--state-dir` or
RAYDEPLOY_STATE_DIR moves it):

    state.db          runs, per checkpoint per host per operation results, approvals, audit trail
    audit.head        the newest audit event's number and hash (see raydeploy/audit.py)
    run.lock          the run holding the lock: JSON {lock_id, run_id, pid, hostname, started_at}
    logs/<run>.log    everything pyinfra printed during the run
    approvals/*.json  approvals written by hand (the seed's manual path), read and recorded
    secrets/          generated secrets, 0600 (the deploys write them here, see deploys/credentials.py)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class StateError(Exception):
    """The state directory cannot be used; the message says why and what to do."""


class LockHeld(Exception):
    """Another run holds the state directory's lock; the message names it."""


@dataclass(frozen=True)
class Lock:
    lock_id: str
    run_id: str
    pid: int
    hostname: str
    started_at: str

    def alive(self) -> bool:
        if self.hostname != socket.gethostname():
            return True  # another machine's process: only its id can break it
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def default_state_dir(inventory: str) -> Path:
    """RAYDEPLOY_STATE_DIR, else `.raydeploy/` beside the inventory file."""
    configured = os.environ.get("RAYDEPLOY_STATE_DIR")
    if configured:
        return Path(configured)
    return Path(inventory).resolve().parent / ".raydeploy"


class StateStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.directory / "logs").mkdir(exist_ok=True, mode=0o700)
        (self.directory / "approvals").mkdir(exist_ok=True, mode=0o700)
        path = self.directory / "state.db"
        try:
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            os.chmod(path, 0o600)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            self.audit = AuditTrail(self.db, self.directory / "audit.head")
        except sqlite3.DatabaseError as error:
            raise StateError(
                f"the state database {path} cannot be used ({error}); nothing was changed. Move it aside "
                f"(mv {path} {path}.broken) to start a new one, or point --state-dir elsewhere"
            ) from None

    def close(self) -> None:
        self.db.close()

    # Runs --------------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, requested_by: str, command: str, inventory: str, fingerprint: str, checkpoints: list[str]
    ) -> None:
        with self.db:
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
        with self.db:
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
        with self.db:
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
        with self.db:
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
        """ROWS: (host, operation, result, stderr)."""
        with self.db:
            self.db.executemany(
                "INSERT INTO operation_results (run_id, checkpoint, host, operation, result, stderr) VALUES (?,?,?,?,?,?)",
                [(run_id, checkpoint, *row) for row in rows],
            )

    def operations(self, run_id: str) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM operation_results WHERE run_id=? ORDER BY rowid", (run_id,))

    def log_path(self, run_id: str) -> Path:
        return self.directory / "logs" / f"{run_id}.log"

    def reset(self) -> dict[str, int]:
        """Forget runs and their results (never approvals' history or the audit trail)."""
        counts = {}
        with self.db:
            for table in ("operation_results", "checkpoint_runs", "runs"):
                counts[table] = self.db.execute(f"DELETE FROM {table}").rowcount
        for log in (self.directory / "logs").glob("*.log"):
            log.unlink()
        return counts

    # The lock -----------------------------------------------------------------------------------

    @property
    def lock_file(self) -> Path:
        return self.directory / "run.lock"

    def current_lock(self) -> Lock | None:
        try:
            return Lock(**json.loads(self.lock_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def acquire(self, run_id: str, actor: str) -> Lock:
        """Take the lock for RUN_ID; a stale one (its process gone) is broken and its run marked interrupted."""
        lock = Lock(uuid.uuid4().hex[:12], run_id, os.getpid(), socket.gethostname(), now_utc())
        for _ in range(3):
            try:
                descriptor = os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                held = self.current_lock()
                if held is None:
                    with contextlib.suppress(FileNotFoundError):
                        self.lock_file.unlink()
                    continue
                if held.alive():
                    raise LockHeld(
                        f"run {held.run_id} holds the lock of {self.directory} (lock {held.lock_id}, pid {held.pid} on "
                        f"{held.hostname}, since {held.started_at}); wait for it, or break it with "
                        f"`raydeploy unlock --lock-id {held.lock_id}` if you are sure it is gone"
                    ) from None
                self._break(held, actor, reason="stale: its process is gone")
                continue
            with os.fdopen(descriptor, "w") as handle:
                json.dump(lock.__dict__, handle)
            return lock
        raise LockHeld(f"could not take the lock of {self.directory}; try again")

    def release(self, lock: Lock) -> None:
        held = self.current_lock()
        if held and held.lock_id == lock.lock_id:
            self.lock_file.unlink()

    def break_lock(self, lock_id: str, actor: str) -> Lock:
        held = self.current_lock()
        if held is None:
            raise LockHeld(f"{self.directory} is not locked")
        if held.lock_id != lock_id:
            raise LockHeld(f"the lock of {self.directory} is {held.lock_id}, not {lock_id}")
        self._break(held, actor, reason="broken by its id")
        return held

    def _break(self, held: Lock, actor: str, reason: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.lock_file.unlink()
        run = self.run(held.run_id)
        if run and run["status"] in ("running", "awaiting-approval"):
            self.finish_run(held.run_id, "interrupted", error=f"lock {reason}")
            with self.db:
                self.db.execute(
                    "UPDATE checkpoint_runs SET status='interrupted', finished_at=? WHERE run_id=? AND status='running'",
                    (now_utc(), held.run_id),
                )
            self.audit.append(actor, "run interrupted", held.run_id, reason=reason)
        self.audit.append(actor, "lock broken", held.run_id, lock_id=held.lock_id, pid=held.pid, reason=reason)

    # Helpers ------------------------------------------------------------------------------------

    def _rows(self, query: str, parameters: tuple = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(query, parameters)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
