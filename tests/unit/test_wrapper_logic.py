"""The wrapper's pure logic: the audit chain, approvals bound to plans, the run lock, checkpoint selection."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest

from raydeploy.approvals import ApprovalError, Approvals, parse_ttl
from raydeploy.plans import Plan
from raydeploy.runner import select
from raydeploy.state import LockHeld, StateStore
from tests.conftest import plan_of


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


def cleanup_plan(removes: str = "ray_head") -> Plan:
    return plan_of(
        "cleanup-existing",
        "fp1",
        {"worker-1": [f"Remove container {removes}"]},
        {"worker-1": [f"cleanup will remove container {removes}: from an older deployment"]},
    )


def test_the_state_directory_and_its_database_are_private(store):
    assert store.directory.stat().st_mode & 0o777 == 0o700
    assert (store.directory / "state.db").stat().st_mode & 0o777 == 0o600


def test_an_intact_audit_trail_verifies_and_free_text_cannot_forge_a_line(store):
    store.audit.append("alice", "approval granted", "cleanup-existing", reason='CHG-1\n{"seq": 99, "event": "forged"}')
    store.audit.append("bob", "run started", "run-1")
    assert store.audit.verify() == []
    exported = [json.loads(line) for line in "".join(e.as_json() + "\n" for e in store.audit.events()).splitlines()]
    assert len(exported) == 2 and exported[0]["details"]["reason"].startswith("CHG-1\n")


@pytest.mark.parametrize(
    ("tamper", "says"),
    [
        ("UPDATE audit SET actor='mallory' WHERE seq=2", "event 2: its content does not match its hash (edited)"),
        ("DELETE FROM audit WHERE seq=2", "event 3: follows event 1; events in between were deleted"),
        ("DELETE FROM audit WHERE seq=3", "newest events deleted"),
        (
            "INSERT INTO audit VALUES (4, '2026-01-01T00:00:00Z', 'mallory', 'approval granted', 'x', '{}', 'f00', 'bar')",
            "event 4: does not chain to the event before it",
        ),
    ],
)
def test_audit_verify_finds_edited_deleted_and_inserted_events(store, tamper, says):
    for number in range(3):
        store.audit.append("alice", "checkpoint started", f"cp-{number}")
    with store.db:
        store.db.execute(tamper)
    assert any(says in problem for problem in store.audit.verify()), store.audit.verify()


def test_an_approval_counts_only_for_its_plan_and_only_once(store):
    approvals = Approvals(store)
    plan = cleanup_plan()
    approval = approvals.grant(plan, "alice", "CHG-1", acknowledge_risks=True)
    assert approval["plan_digest"] == plan.digest and approval["status"] == "valid"
    other = cleanup_plan("grafana")
    decision = approvals.find(other)
    assert decision.approval is None
    assert f"was given for plan {plan.digest}, the plan is now {other.digest}" in decision.reason
    assert "+Remove container grafana" in decision.reason and "-Remove container ray_head" in decision.reason
    moved = cleanup_plan()
    moved.fingerprint = "fp2"
    assert "another inventory" in approvals.find(moved).reason
    found = approvals.find(plan).approval
    approvals.use(found, "run-1", "bob")
    assert approvals.find(plan).approval is None  # used once, never again
    with pytest.raises(ApprovalError, match="used or withdrawn"):
        approvals.use(found, "run-2", "bob")
    events = [event.event for event in store.audit.events()]
    assert events == ["approval granted", "approval used"]


def test_destructive_approvals_need_the_risks_acknowledged(store):
    with pytest.raises(ApprovalError, match="destructive: approve it with --acknowledge-risks"):
        Approvals(store).grant(cleanup_plan(), "alice", "CHG-1")
    assert store.audit.events()[-1].event == "approval refused"


def test_expiry_fails_closed(store):
    approvals = Approvals(store)
    approvals.grant(cleanup_plan(), "alice", "CHG-1", acknowledge_risks=True, ttl=timedelta(seconds=-1))
    assert approvals.find(cleanup_plan()).approval is None
    assert [a["status"] for a in approvals.all()] == ["expired"]
    assert store.audit.events()[-1].event == "approval expired"


def test_revoked_and_rejected_approvals_do_not_count(store):
    approvals = Approvals(store)
    first = approvals.grant(cleanup_plan(), "alice", "CHG-1", acknowledge_risks=True)
    approvals.revoke(first["id"], "alice", "wrong window")
    assert approvals.find(cleanup_plan()).approval is None
    approvals.grant(cleanup_plan(), "alice", "CHG-2", acknowledge_risks=True)
    approvals.reject(cleanup_plan(), "carol", "freeze")
    assert approvals.find(cleanup_plan()).approval is None
    assert {a["status"] for a in approvals.all()} == {"revoked", "rejected"}


def test_separation_of_duties_refuses_a_self_approved_destructive_plan(store):
    Approvals(store).grant(cleanup_plan(), "alice", "CHG-1", acknowledge_risks=True)
    strict = Approvals(store, separation_of_duties=True)
    decision = strict.find(cleanup_plan(), requested_by="alice")
    assert decision.approval is None and "separation of duties" in decision.reason
    assert strict.find(cleanup_plan(), requested_by="bob").approval is not None
    lenient = Approvals(store)
    approval = lenient.find(cleanup_plan(), requested_by="alice").approval
    lenient.use(approval, "run-1", "alice")
    assert store.audit.events()[-1].details["self_approval"] is True


def test_a_manual_approval_file_is_honoured_once_and_audited(store):
    plan = cleanup_plan()
    folder = store.directory / "approvals"
    (folder / "change.json").write_text(
        json.dumps(
            {
                "checkpoint": "cleanup-existing",
                "approved_by": "dana",
                "reason": "CHG-9",
                "acknowledge_risks": True,
                "plan_digest": plan.digest,
            }
        )
    )
    (folder / "stale.json").write_text(
        json.dumps(
            {
                "checkpoint": "cleanup-existing",
                "approved_by": "dana",
                "reason": "old",
                "acknowledge_risks": True,
                "plan_digest": "0000",
            }
        )
    )
    (folder / "broken.json").write_text("{not json")
    approval = Approvals(store).find(plan).approval
    assert approval is not None and approval["source"] == "file change.json" and approval["approved_by"] == "dana"
    assert not list(folder.glob("*.json"))  # each recorded (or refused) once
    refused = [e for e in store.audit.events() if e.event == "approval refused"]
    why = {event.details["file"]: event.details["why"] for event in refused}
    assert set(why) == {"broken.json", "stale.json"} and "not the current plan" in why["stale.json"]


def test_ttl_is_checked():
    assert parse_ttl("90m") == timedelta(minutes=90)
    for bad in ("forever", "0h", "1y"):
        with pytest.raises(ApprovalError, match="give a duration like 30m, 1h, 2d"):
            parse_ttl(bad)


HOLD_LOCK = """
import sys, time
from raydeploy.state import StateStore
lock = StateStore(sys.argv[1]).acquire("run-1", "alice")
print(lock.lock_id, flush=True)
if sys.argv[2] == "hold":
    time.sleep(60)
"""


def lock_in_child(store: StateStore, hold: bool) -> tuple[subprocess.Popen, str]:
    """Another process takes STORE's lock for run-1; with HOLD it keeps it until killed, else it exits holding it."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(store.directory), "hold" if hold else "exit"],
        stdout=subprocess.PIPE,
        text=True,
    )
    return child, child.stdout.readline().strip()


def test_one_run_at_a_time_while_its_process_lives(store):
    child, lock_id = lock_in_child(store, hold=True)
    try:
        with pytest.raises(LockHeld, match=rf"run run-1 holds the lock .*lock {lock_id}, pid {child.pid}"):
            store.acquire("run-2", "bob")
        assert store.current_lock().lock_id == lock_id
        store.release(store.current_lock())  # a lock this store does not hold is never given back by it
        with pytest.raises(LockHeld):
            store.acquire("run-2", "bob")
    finally:
        child.kill()
        child.wait()
    assert store.acquire("run-2", "bob").run_id == "run-2"


HOLD_FROM_ELSEWHERE = """
import fcntl, json, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(descriptor, fcntl.LOCK_EX)
holder = {"lock_id": "elsewhere01", "run_id": "run-far", "pid": 4194304, "hostname": "control-2",
          "started_at": "2026-11-30T00:00:00Z"}
os.pwrite(descriptor, json.dumps(holder).encode(), 0)
print("held", flush=True)
time.sleep(60)
"""


def test_a_lock_held_from_another_host_is_never_counted_dead(store):
    # A run on another control host (a shared state directory): its pid means nothing here and its
    # hostname is not ours, but the kernel's lock is held, so the lock is not free.
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_FROM_ELSEWHERE, str(store.lock_file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=r"run run-far holds the lock .*pid 4194304 on control-2"):
            store.acquire("run-2", "bob")
        held = store.current_lock()
        assert (held.run_id, held.hostname) == ("run-far", "control-2")
        store.release(held)
        assert store.current_lock() == held
    finally:
        child.kill()
        child.wait()


def test_a_dead_runs_lock_is_free_and_its_run_marked_interrupted(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", ["ray-deployment"])
    store.start_checkpoint("run-1", "ray-deployment")
    child, _ = lock_in_child(store, hold=False)
    child.wait()
    assert store.current_lock() is None
    second = store.acquire("run-2", "bob")
    assert store.current_lock() == second
    assert store.run("run-1")["status"] == "interrupted"
    assert store.checkpoint_runs("run-1")[0]["status"] == "interrupted"
    assert [e.event for e in store.audit.events()][-2:] == ["run interrupted", "lock released"]
    store.release(second)
    assert store.current_lock() is None


def test_reset_forgets_runs_and_keeps_approvals_and_the_audit_trail(store):
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", ["ray-deployment"])
    Approvals(store).grant(cleanup_plan(), "alice", "CHG-1", acknowledge_risks=True)
    events = len(store.audit.events())
    assert store.reset()["runs"] == 1
    assert store.runs() == [] and len(Approvals(store).all()) == 1 and len(store.audit.events()) == events


def test_checkpoints_are_selected_in_order():
    assert select()[0] == "prerequisites-check" and select()[-1] == "final-validation"
    assert select(start_from="ray-deployment") == ["ray-deployment", "monitoring-deployment", "final-validation"]
    assert select(only=["final-validation", "docker-installation"]) == ["docker-installation", "final-validation"]


def test_the_database_is_sqlite_with_every_table(store):
    tables = {row[0] for row in sqlite3.connect(store.directory / "state.db").execute("SELECT name FROM sqlite_master")}
    assert {"runs", "checkpoint_runs", "operation_results", "approvals", "audit"} <= tables
    assert os.access(store.directory / "logs", os.W_OK)


def test_two_processes_appending_to_the_audit_trail_at_once_never_fork_its_chain(tmp_path):
    """The CLI and the API write one trail from two processes: each append reads the last event and
    inserts the next one in one write transaction, so no two events claim the same place."""
    writer = (
        "import sys\n"
        "from pathlib import Path\n"
        "from raydeploy.state import StateStore\n"
        "store = StateStore(Path(sys.argv[1]))\n"
        "for n in range(150):\n"
        "    store.audit.append(sys.argv[2], 'tick', str(n))\n"
    )
    StateStore(tmp_path)  # the schema, before both start
    writers = [
        subprocess.Popen([sys.executable, "-c", writer, str(tmp_path), name], cwd=os.getcwd())
        for name in ("cli", "api")
    ]
    assert [process.wait(timeout=120) for process in writers] == [0, 0]
    store = StateStore(tmp_path)
    events = store.audit.events()
    assert len(events) == 300 and [event.seq for event in events] == list(range(1, 301))
    assert store.audit.verify() == []


def test_a_lock_taken_by_one_store_is_given_back_by_another_of_the_same_process(store):
    # The API takes a run's lock in the request's thread; the run's thread, with its own store, releases it.
    lock = store.acquire("run-api", "alice")
    StateStore(store.directory).release(lock)
    assert store.current_lock() is None
    assert store.acquire("run-next", "bob").run_id == "run-next"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("at", "2020-01-01T00:00:00.000000Z"),
        ("actor", "mallory"),
        ("event", "run finished"),
        ("target", "cleanup-existing"),
        ("details", '{"reason": "forged"}'),
    ],
)
def test_editing_any_field_of_an_event_is_found(store, column, value):
    for number in range(3):
        store.audit.append("alice", "checkpoint started", f"cp-{number}", reason=f"CHG-{number}")
    with store.db:
        store.db.execute(f"UPDATE audit SET {column}=? WHERE seq=2", (value,))
    assert "event 2: its content does not match its hash (edited)" in store.audit.verify()


def test_an_edited_event_rehashed_and_rechained_is_still_found(store):
    # Even with the key, whoever edits event 2 and makes its hash again must point event 3 at it; event 3's
    # own hash covers the hash it chains to (prev_hash), so the edit still shows.
    from raydeploy.audit import event_hash

    for number in range(3):
        store.audit.append("alice", "checkpoint started", f"cp-{number}")
    key = store.audit.key_of_trail().read()
    seq, at, actor, event, target, _details, prev = store.db.execute(
        "SELECT seq, at, actor, event, target, details, prev_hash FROM audit WHERE seq=2"
    ).fetchone()
    forged_details = '{"reason": "forged"}'
    forged = event_hash(key, seq, at, actor, event, target, forged_details, prev)
    with store.db:
        store.db.execute("UPDATE audit SET details=?, hash=? WHERE seq=2", (forged_details, forged))
        store.db.execute("UPDATE audit SET prev_hash=? WHERE seq=3", (forged,))
    assert store.audit.verify() == ["event 3: its content does not match its hash (edited)"]


def test_with_takes_only_the_arguments_the_action_names(tmp_path):
    from click.testing import CliRunner

    from raydeploy.cli import main

    unknown = CliRunner().invoke(main, ["plan", "destroy", "--with", "purge=true", "--state-dir", str(tmp_path)])
    assert unknown.exit_code == 2
    assert "destroy takes no argument purge; its arguments are purge_data, forget_secrets" in unknown.output
    checkpoint = CliRunner().invoke(main, ["plan", "--with", "drain_timeout=5", "--state-dir", str(tmp_path)])
    assert checkpoint.exit_code == 2 and "prerequisites-check takes no arguments" in checkpoint.output
