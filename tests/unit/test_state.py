"""The state directory: what each record keeps, what reset forgets, the run lock's file and its words."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from raydeploy.state import Lock, LockHeld, StateError, StateStore, default_state_dir
from tests.unit.test_wrapper_logic import lock_in_child


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "deep" / "state")


def test_a_state_directory_is_made_with_its_parents_and_private_folders(store):
    for folder in (store.directory, store.directory / "logs", store.directory / "approvals"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    assert store.log_path("run-1") == store.directory / "logs" / "run-1.log"


def test_a_broken_database_is_refused_with_how_to_start_anew(tmp_path):
    (tmp_path / "state.db").write_text("this is not sqlite " * 100)
    with pytest.raises(StateError) as refused:
        StateStore(tmp_path)
    path = tmp_path / "state.db"
    assert str(refused.value).startswith(f"the state database {path} cannot be used (")
    assert str(refused.value).endswith(
        f"); nothing was changed. Move it aside (mv {path} {path}.broken) to start a new one, or point --state-dir elsewhere"
    )


def test_the_state_directory_is_the_configured_one_or_beside_the_inventory(tmp_path, monkeypatch):
    monkeypatch.delenv("RAYDEPLOY_STATE_DIR", raising=False)
    assert default_state_dir(str(tmp_path / "inventories" / "prod.py")) == tmp_path / "inventories" / ".raydeploy"
    monkeypatch.setenv("RAYDEPLOY_STATE_DIR", str(tmp_path / "elsewhere"))
    assert default_state_dir("inventories/prod.py") == tmp_path / "elsewhere"


def test_a_run_records_who_what_and_how_it_ended(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", ["docker-installation", "ray-deployment"])
    run = store.run("run-1")
    assert {key: run[key] for key in ("status", "requested_by", "command", "inventory", "fingerprint", "pid")} == {
        "status": "running",
        "requested_by": "alice",
        "command": "raydeploy deploy",
        "inventory": "inv.py",
        "fingerprint": "fp",
        "pid": os.getpid(),
    }
    assert json.loads(run["checkpoints"]) == ["docker-installation", "ray-deployment"] and run["started_at"]
    assert run["finished_at"] is None
    store.finish_run("run-1", "failed", "ray-deployment", ["worker-1"], "worker-1: no Docker")
    run = store.run("run-1")
    assert (run["status"], run["failed_checkpoint"], json.loads(run["failed_hosts"]), run["error"]) == (
        "failed",
        "ray-deployment",
        ["worker-1"],
        "worker-1: no Docker",
    )
    assert run["finished_at"] >= run["started_at"]
    store.start_run("run-2", "bob", "raydeploy deploy", "inv.py", "fp", [])
    store.finish_run("run-2", "succeeded")
    assert json.loads(store.run("run-2")["failed_hosts"]) == [] and store.run("nope") is None


def test_runs_are_listed_newest_first_twenty_at_a_time(store):
    assert store.last_run() is None
    for number in range(22):
        store.start_run(f"run-{number:02}", "alice", "raydeploy deploy", "inv.py", "fp", [])
    assert len(store.runs()) == 20 and store.runs()[0]["id"] == "run-21"
    assert [run["id"] for run in store.runs(2)] == ["run-21", "run-20"]
    assert store.last_run()["id"] == "run-21"


def test_a_checkpoint_run_records_its_plan_changes_and_failures(store):
    assert store.last_result("ray-deployment") is None
    store.start_checkpoint("run-1", "docker-installation", "digest-1")
    store.start_checkpoint("run-1", "ray-deployment")
    store.finish_checkpoint("run-1", "ray-deployment", "failed", 3, ["worker-1"], "no Docker")
    first, second = store.checkpoint_runs("run-1")
    assert (first["checkpoint"], first["status"], first["plan_digest"]) == (
        "docker-installation",
        "running",
        "digest-1",
    )
    assert (second["status"], second["changed"], json.loads(second["failed_hosts"]), second["error"]) == (
        "failed",
        3,
        ["worker-1"],
        "no Docker",
    )
    assert second["finished_at"] >= second["started_at"]
    store.start_checkpoint("run-2", "ray-deployment")
    store.finish_checkpoint("run-2", "ray-deployment", "succeeded")
    last = store.last_result("ray-deployment")
    assert (last["run_id"], last["status"], last["changed"], json.loads(last["failed_hosts"])) == (
        "run-2",
        "succeeded",
        0,
        [],
    )
    assert store.checkpoint_runs("run-3") == []


def test_operation_and_validation_results_are_kept_per_run_in_order(store):
    store.record_operations(
        "run-1", "docker-installation", [("head", "Install", "changed", "ok"), ("w", "Install", "failed", "E")]
    )
    store.record_operations("run-2", "docker-installation", [("head", "Install", "unchanged", "")])
    assert [
        (row["checkpoint"], row["host"], row["operation"], row["result"], row["stderr"])
        for row in store.operations("run-1")
    ] == [
        ("docker-installation", "head", "Install", "changed", "ok"),
        ("docker-installation", "w", "Install", "failed", "E"),
    ]
    store.record_validation(
        "run-1", "final-validation", [("cluster", "ray job", "pass", "3 nodes"), ("w", "docker", "fail", "x")]
    )
    store.record_validation("run-2", "final-validation", [("cluster", "ray job", "fail", "")])
    assert [
        (row["checkpoint"], row["host"], row["check_name"], row["status"], row["detail"])
        for row in store.validations("run-1")
    ] == [
        ("final-validation", "cluster", "ray job", "pass", "3 nodes"),
        ("final-validation", "w", "docker", "fail", "x"),
    ]


def test_reset_counts_what_it_forgot_and_removes_the_run_logs_only(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    store.start_checkpoint("run-1", "ray-deployment")
    store.record_operations("run-1", "ray-deployment", [("head", "Start", "changed", "")] * 2)
    store.record_validation("run-1", "ray-deployment", [("head", "ray", "pass", "")] * 3)
    store.log_path("run-1").write_text("pyinfra said\n")
    kept = store.directory / "logs" / "notes.txt"
    kept.write_text("not a run log")
    assert store.reset() == {"validation_results": 3, "operation_results": 2, "checkpoint_runs": 1, "runs": 1}
    assert store.operations("run-1") == [] and store.validations("run-1") == [] and store.checkpoint_runs("run-1") == []
    assert not store.log_path("run-1").exists() and kept.exists()


def refuse(store: StateStore, statement: str, table: str, when: str = "1") -> None:
    """A trigger that makes every STATEMENT ("DELETE", "INSERT", "UPDATE") on TABLE matching WHEN fail."""
    store.db.execute(
        f"CREATE TRIGGER refuse_{statement.lower()}_{table} BEFORE {statement} ON {table} WHEN {when}"
        f" BEGIN SELECT RAISE(ABORT, 'refused on purpose'); END"
    )


def test_a_reset_that_fails_midway_forgets_nothing(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    store.start_checkpoint("run-1", "ray-deployment")
    store.record_operations("run-1", "ray-deployment", [("head", "Start", "changed", "")] * 2)
    store.record_validation("run-1", "ray-deployment", [("head", "ray", "pass", "")] * 3)
    store.log_path("run-1").write_text("pyinfra said\n")
    refuse(store, "DELETE", "runs")  # runs are the last table reset empties
    with pytest.raises(sqlite3.IntegrityError, match="refused on purpose"):
        store.reset()
    assert (len(store.validations("run-1")), len(store.operations("run-1")), len(store.checkpoint_runs("run-1"))) == (
        3,
        2,
        1,
    )
    assert store.run("run-1") is not None and store.log_path("run-1").exists()
    assert not store.db.in_transaction


@pytest.mark.parametrize(
    ("record", "table", "rows"),
    [
        ("record_operations", "operation_results", [("head", "Start", "changed", ""), ("bad", "Start", "failed", "")]),
        ("record_validation", "validation_results", [("head", "ray", "pass", ""), ("bad", "ray", "fail", "")]),
    ],
)
def test_results_are_recorded_all_or_none(store, record, table, rows):
    refuse(store, "INSERT", table, "NEW.host = 'bad'")
    with pytest.raises(sqlite3.IntegrityError, match="refused on purpose"):
        getattr(store, record)("run-1", "ray-deployment", rows)
    assert store.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0


def test_hosts_are_recorded_all_or_none(store):
    refuse(store, "INSERT", "hosts", "NEW.name = 'bad'")
    with pytest.raises(sqlite3.IntegrityError, match="refused on purpose"):
        store.record_hosts(["head", "bad"], "deployed", "run-1")
    assert store.hosts() == []


def test_a_token_that_cannot_be_inserted_leaves_the_revoked_one_of_its_name(store):
    store.insert_token(token("t1", "ci", "2026-01-01"))
    store.insert_token(token("t2", "ops", "2026-01-02"))
    store.revoke_token("t1")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        store.insert_token(token("t2", "ci", "2026-01-03"))  # t2 is taken: nothing changes
    assert [(t["id"], t["name"], bool(t["revoked_at"])) for t in store.tokens()] == [
        ("t1", "ci", True),
        ("t2", "ops", False),
    ]


def test_a_transaction_takes_the_write_lock_before_its_first_statement(store):
    # So a second writer waits for it (the connection's timeout) instead of failing it halfway.
    other = sqlite3.connect(store.directory / "state.db", timeout=0, isolation_level=None)
    with store.transaction(), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_a_writer_waits_for_another_longer_than_sqlites_default_five_seconds(store):
    # The CLI beside the API: a write waits for the other's transaction (up to 30 s) instead of failing.
    other = sqlite3.connect(store.directory / "state.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    finishing = threading.Timer(5.5, lambda: other.execute("COMMIT"))
    finishing.start()
    try:
        store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    finally:
        finishing.join()
        other.close()
    assert store.run("run-1")["status"] == "running"


def test_a_transaction_inside_another_is_part_of_it(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
        store.finish_run("run-1", "succeeded")  # its own block, inside ours
        assert store.db.in_transaction
        raise RuntimeError("the caller fails after both")
    assert store.run("run-1") is None and not store.db.in_transaction
    with store.transaction():
        store.start_run("run-2", "alice", "raydeploy deploy", "inv.py", "fp", [])
        store.finish_run("run-2", "succeeded")
    assert store.run("run-2")["status"] == "succeeded"


def test_a_commit_that_fails_rolls_back_and_says_why(store):
    # A deferred foreign key is checked at COMMIT: the commit fails and the transaction would stay open.
    store.db.execute("PRAGMA foreign_keys=ON")
    store.db.execute("CREATE TABLE parent (id TEXT PRIMARY KEY)")
    store.db.execute("CREATE TABLE child (parent TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), store.transaction():
        store.db.execute("INSERT INTO child VALUES ('nobody')")
        store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    assert not store.db.in_transaction and store.run("run-1") is None
    store.start_run("run-2", "alice", "raydeploy deploy", "inv.py", "fp", [])
    assert store.run("run-2")["status"] == "running"


def test_an_error_that_ended_the_transaction_itself_is_the_one_raised(store):
    # RAISE(ROLLBACK) ends the transaction before our block sees the error: no second ROLLBACK may hide it.
    store.db.execute(
        "CREATE TRIGGER roll_back BEFORE INSERT ON runs BEGIN SELECT RAISE(ROLLBACK, 'rolled back by SQLite'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="rolled back by SQLite"):
        store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    assert not store.db.in_transaction


def approval(approval_id: str, checkpoint: str, created_at: str, status: str = "valid") -> dict:
    return {
        "id": approval_id,
        "checkpoint": checkpoint,
        "fingerprint": "fp",
        "plan_digest": "d",
        "plan_summary": "{}",
        "approved_by": "alice",
        "reason": "CHG",
        "acknowledge_risks": 0,
        "created_at": created_at,
        "expires_at": "2999-01-01T00:00:00Z",
        "status": status,
        "source": "cli",
    }


def test_approvals_are_listed_newest_first_by_checkpoint_and_status(store):
    store.insert_approval(approval("a", "docker-installation", "2026-01-01"))
    store.insert_approval(approval("b", "docker-installation", "2026-01-03", "used"))
    store.insert_approval(approval("c", "cleanup-existing", "2026-01-02"))
    assert [a["id"] for a in store.approvals()] == ["b", "c", "a"]
    assert [a["id"] for a in store.approvals("docker-installation")] == ["b", "a"]
    assert [a["id"] for a in store.approvals(status="valid")] == ["c", "a"]
    assert [a["id"] for a in store.approvals("docker-installation", "valid")] == ["a"]
    assert store.approval("c")["checkpoint"] == "cleanup-existing" and store.approval("nope") is None


def test_only_a_valid_approval_can_be_closed_or_used(store):
    store.insert_approval(approval("a", "docker-installation", "2026-01-01"))
    store.insert_approval(approval("b", "docker-installation", "2026-01-01"))
    assert store.close_approval("a", "revoked", "dave", "why") is True
    assert store.close_approval("a", "rejected", "erin", "again") is False
    assert (store.approval("a")["status"], store.approval("a")["closed_by"]) == ("revoked", "dave")
    assert store.use_approval("a", "run-1") is False
    assert store.use_approval("b", "run-1") is True and store.use_approval("b", "run-2") is False
    assert (store.approval("b")["status"], store.approval("b")["used_by_run"]) == ("used", "run-1")


def token(token_id: str, name: str, created_at: str) -> dict:
    return {
        "id": token_id,
        "name": name,
        "role": "viewer",
        "hash": f"hash-{token_id}",
        "created_at": created_at,
        "created_by": "root",
    }


def test_tokens_are_found_by_name_or_id_until_revoked_and_their_hash_is_never_listed(store):
    store.insert_token(token("t1", "ci", "2026-01-02"))
    store.insert_token(token("t2", "ops", "2026-01-01"))
    assert [t["id"] for t in store.active_tokens()] == ["t2", "t1"]
    assert [t["id"] for t in store.active_tokens("ci")] == ["t1"] == [t["id"] for t in store.active_tokens("t1")]
    assert all("hash" not in listed for listed in store.tokens())
    assert [t["name"] for t in store.tokens()] == ["ops", "ci"]
    store.revoke_token("t1")
    assert store.active_tokens("ci") == [] and [t["id"] for t in store.active_tokens()] == ["t2"]
    assert next(t for t in store.tokens() if t["id"] == "t1")["revoked_at"]
    store.insert_token(token("t3", "ci", "2026-01-03"))  # a revoked token's name can be given again
    assert [t["id"] for t in store.active_tokens("ci")] == ["t3"]
    with pytest.raises(Exception, match="UNIQUE"):
        store.insert_token(token("t4", "ops", "2026-01-04"))  # an active one's cannot


def test_the_lock_file_names_its_holder_and_is_emptied_when_given_back(store):
    lock = store.acquire("run-1", "alice")
    assert store.lock_file.stat().st_mode & 0o777 == 0o600
    held = json.loads(store.lock_file.read_text())
    assert held == {
        "lock_id": lock.lock_id,
        "run_id": "run-1",
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "started_at": lock.started_at,
    }
    assert len(lock.lock_id) == 12 and lock.started_at.endswith("Z")
    store.release(lock)
    assert store.lock_file.read_text() == "" and store.current_lock() is None


def test_a_held_lock_is_refused_in_words_that_name_the_holder(store):
    child, lock_id = lock_in_child(store, hold=True)
    try:
        holder = store.current_lock()
        with pytest.raises(LockHeld) as refused:
            store.acquire("run-2", "bob")
        assert str(refused.value) == (
            f"run run-1 holds the lock of {store.directory} (lock {lock_id}, pid {child.pid} on {socket.gethostname()}, "
            f"since {holder.started_at}); wait for it to finish, or stop that process"
        )
        store.lock_file.write_text("")  # a holder that has not written its name yet
        with pytest.raises(LockHeld) as unnamed:
            store.acquire("run-2", "bob")
        assert (
            str(unnamed.value)
            == f"run ? holds the lock of {store.directory}; wait for it to finish, or stop that process"
        )
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("status", ["running", "awaiting-approval"])
def test_a_dead_runs_lock_is_taken_over_and_the_takeover_audited(store, status):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    store.finish_run("run-1", status)
    store.start_checkpoint("run-1", "docker-installation")
    store.finish_checkpoint("run-1", "docker-installation", "succeeded")
    store.start_checkpoint("run-1", "ray-deployment")
    dead = Lock("dead0lock000", "run-1", 999999, "elsewhere", "2026-01-01T00:00:00Z")
    store.lock_file.write_text(json.dumps(dead.__dict__))
    store.acquire("run-2", "bob")
    reason = "its process ended without finishing the run"
    run = store.run("run-1")
    assert (run["status"], run["error"]) == ("interrupted", f"lock released: {reason}")
    assert [(row["checkpoint"], row["status"]) for row in store.checkpoint_runs("run-1")] == [
        ("docker-installation", "succeeded"),
        ("ray-deployment", "interrupted"),
    ]
    assert store.checkpoint_runs("run-1")[1]["finished_at"]
    assert [(e.actor, e.event, e.target, e.details) for e in store.audit.events()] == [
        ("bob", "run interrupted", "run-1", {"reason": reason}),
        ("bob", "lock released", "run-1", {"lock_id": "dead0lock000", "pid": 999999, "reason": reason}),
    ]


def test_a_takeover_that_fails_changes_nothing_and_gives_the_lock_back(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    store.start_checkpoint("run-1", "ray-deployment")
    store.lock_file.write_text(json.dumps(Lock("dead0lock000", "run-1", 999999, "elsewhere", "t").__dict__))
    refuse(store, "UPDATE", "checkpoint_runs")
    with pytest.raises(sqlite3.IntegrityError, match="refused on purpose"):
        store.acquire("run-2", "bob")
    assert store.run("run-1")["status"] == "running", "the run is interrupted with its checkpoints or not at all"
    assert store.current_lock() is None and store.audit.events() == []
    store.db.execute("DROP TRIGGER refuse_update_checkpoint_runs")
    assert store.acquire("run-2", "bob").run_id == "run-2"
    assert (store.run("run-1")["status"], store.checkpoint_runs("run-1")[0]["status"]) == ("interrupted", "interrupted")


def test_a_finished_runs_stale_lock_is_released_without_touching_the_run(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", [])
    store.finish_run("run-1", "succeeded")
    store.lock_file.write_text(json.dumps(Lock("l1", "run-1", 1, "h", "t").__dict__))
    store.acquire("run-2", "bob")
    assert store.run("run-1")["status"] == "succeeded"
    assert [e.event for e in store.audit.events()] == ["lock released"]


def test_a_lock_file_that_names_no_one_is_simply_taken(store):
    for text in ("", "{not json", '{"run_id": "x"}'):
        Path(store.lock_file).write_text(text)
        lock = store.acquire("run-2", "bob")
        store.release(lock)
    assert store.audit.events() == []


def test_asking_who_holds_a_fresh_directorys_lock_makes_a_private_lock_file(store):
    assert not store.lock_file.exists()
    assert store.current_lock() is None
    assert store.lock_file.stat().st_mode & 0o777 == 0o600


def test_a_state_store_opened_in_one_thread_serves_another(store):
    # The API opens a run's store in the request's thread and finishes the run in the run's own thread.
    store.start_run("run-1", "alice", "deploy", "inventory.py", "fp", ["cleanup-existing"])
    found = []
    worker = threading.Thread(target=lambda: found.append(store.run("run-1")["status"]))
    worker.start()
    worker.join()
    assert found == ["running"]


@pytest.mark.parametrize("failure", ["the block raises", "the commit fails"])
def test_an_audit_event_whose_transaction_rolls_back_leaves_an_intact_trail(store, failure):
    store.audit.append("alice", "run started", "run-1")
    if failure == "the commit fails":  # a deferred foreign key is checked at COMMIT
        store.db.execute("PRAGMA foreign_keys=ON")
        store.db.execute("CREATE TABLE parent (id TEXT PRIMARY KEY)")
        store.db.execute("CREATE TABLE child (parent TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises((RuntimeError, sqlite3.IntegrityError)), store.transaction():
        store.audit.append("alice", "approval granted", "docker-installation")
        if failure == "the block raises":
            raise RuntimeError("after the event")
        store.db.execute("INSERT INTO child VALUES ('nobody')")
    assert [event.event for event in store.audit.events()] == ["run started"]
    assert store.audit.verify() == []
    store.audit.append("alice", "run finished", "run-1")
    assert store.audit.verify() == [] and store.audit.head()[0] == 2


def test_events_committed_in_a_transaction_keep_their_heads_and_a_later_rollback_goes_back_only_to_them(store):
    store.audit.append("alice", "run started", "run-1")
    with store.transaction():
        store.audit.append("alice", "approval granted", "docker-installation")
        store.audit.append("alice", "approval used", "docker-installation")
    assert store.audit.verify() == [] and store.audit.head_file.read_text().split()[0] == "3"
    with pytest.raises(RuntimeError), store.transaction():
        store.audit.append("alice", "approval granted", "cleanup-existing")
        raise RuntimeError("after the event")
    assert store.audit.verify() == [] and store.audit.head_file.read_text().split()[0] == "3"
    assert store.audit.key_of_trail().head_file.read_text().split()[0] == "3"


def test_each_audit_event_a_webhook_announces_is_queued_with_it_in_the_state_database(store, monkeypatch):
    from raydeploy import webhook_outbox

    told: list = []
    monkeypatch.setattr(webhook_outbox, "QUEUED_LISTENERS", [told.append])  # who sends: told where to look
    store.db.execute(
        "INSERT INTO webhook_endpoints (id, url, format, events, cluster, allow_private, created_at, created_by)"
        " VALUES ('e1', 'http://127.0.0.1:9/refused-by-the-guard', 'json', '[]', 'ray', 0, 't', 'alice')"
    )
    store.audit.append("alice", "checkpoint started", "docker-installation")  # no webhook announces it
    store.audit.append("alice", "run started", "r1")
    queued = store.db.execute(
        "SELECT e.type, e.target, d.endpoint_id FROM webhook_events e JOIN webhook_deliveries d ON d.event_id = e.id"
    ).fetchall()
    assert [tuple(row) for row in queued] == [("run.started", "r1", "e1")]
    assert told == [store.directory]
