"""Approvals as records and events: what each one holds, what it says when refused, what the trail keeps."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from raydeploy.approvals import ApprovalError, Approvals, changed_since, parse_ttl
from raydeploy.audit import AuditKeyError
from raydeploy.state import StateStore
from tests.conftest import plan_of


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


def cleanup(removes: str = "ray_head", fingerprint: str = "fp1"):
    return plan_of("cleanup-existing", fingerprint, {"worker-1": [f"Remove container {removes}"]})


def docker(fingerprint: str = "fp1"):
    return plan_of("docker-installation", fingerprint, {"head": ["Install docker.io"]})


def last_event(store: StateStore) -> tuple[str, str, str, dict]:
    event = store.audit.events()[-1]
    return event.actor, event.event, event.target, event.details


def write_file(store: StateStore, name: str, body: object) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    (store.directory / "approvals" / name).write_text(text)


@pytest.mark.parametrize(("text", "length"), [("45s", 45), ("90m", 5400), ("2h", 7200), ("3d", 259200), (" 1h ", 3600)])
def test_a_ttl_is_read_in_seconds_minutes_hours_or_days(text, length):
    assert parse_ttl(text) == timedelta(seconds=length)


def test_a_bad_ttl_is_named_in_the_error():
    with pytest.raises(ApprovalError) as refused:
        parse_ttl("forever")
    assert str(refused.value) == "--ttl 'forever': give a duration like 30m, 1h, 2d"


def test_an_approval_records_who_why_when_and_exactly_which_plan(store):
    plan = cleanup()
    before = datetime.now(UTC)
    approval = Approvals(store).grant(plan, " alice ", " CHG-1 ", acknowledge_risks=True, ttl=timedelta(minutes=30))
    created = datetime.fromisoformat(approval["created_at"])
    expires = datetime.fromisoformat(approval["expires_at"])
    assert before <= created <= datetime.now(UTC) and expires - created == timedelta(minutes=30)
    assert approval["expires_at"].endswith("Z") and len(approval["id"]) == 12
    assert {key: approval[key] for key in approval if key not in ("id", "created_at", "expires_at")} == {
        "checkpoint": "cleanup-existing",
        "fingerprint": "fp1",
        "plan_digest": plan.digest,
        "plan_summary": json.dumps(plan.document, sort_keys=True),
        "approved_by": "alice",
        "reason": "CHG-1",
        "acknowledge_risks": 1,
        "status": "valid",
        "source": "cli",
        "used_by_run": None,
        "closed_by": None,
        "closed_reason": None,
    }
    assert last_event(store) == (
        "alice",
        "approval granted",
        "cleanup-existing",
        {
            "approval_id": approval["id"],
            "approved_by": "alice",
            "reason": "CHG-1",
            "plan_digest": plan.digest,
            "fingerprint": "fp1",
            "expires_at": approval["expires_at"],
            "acknowledge_risks": True,
            "source": "cli",
        },
    )


def test_an_approval_given_through_the_api_names_its_caller_as_the_actor(store):
    approval = Approvals(store).grant(docker(), "alice", "CHG-1", source="api", actor="token:ops")
    assert approval["source"] == "api" and approval["acknowledge_risks"] == 0
    actor, _, _, details = last_event(store)
    assert actor == "token:ops" and details["source"] == "api" and details["acknowledge_risks"] is False


@pytest.mark.parametrize(
    ("by", "reason", "says"),
    [
        (" ", "CHG-1", "an approval needs who gives it (--by)"),
        ("alice", " ", "an approval needs a reason (--reason)"),
    ],
)
def test_an_approval_needs_who_and_why(store, by, reason, says):
    with pytest.raises(ApprovalError) as refused:
        Approvals(store).grant(docker(), by, reason)
    assert str(refused.value) == says and store.approvals() == []


def test_a_checkpoint_without_approvals_refuses_one(store):
    plan = plan_of("ray-deployment", "fp1", {"head": ["Start ray"]})
    with pytest.raises(ApprovalError) as refused:
        Approvals(store).grant(plan, "alice", "CHG-1")
    assert str(refused.value) == "ray-deployment needs no approval; it runs without one"


def test_a_refused_destructive_approval_is_audited_with_who_and_why(store):
    with pytest.raises(ApprovalError):
        Approvals(store).grant(cleanup(), "alice", "CHG-1", actor="token:ops")
    assert last_event(store) == (
        "token:ops",
        "approval refused",
        "cleanup-existing",
        {"approved_by": "alice", "why": "risks not acknowledged"},
    )
    Approvals(store).grant(docker(), "bob", "CHG-2")  # not destructive: no acknowledgement needed
    assert store.audit.events()[-1].event == "approval granted"


def test_a_rejection_closes_only_that_checkpoints_open_approvals_and_says_who_and_why(store):
    approvals = Approvals(store)
    cleanup_approval = approvals.grant(cleanup(), "alice", "CHG-1", acknowledge_risks=True)
    docker_approval = approvals.grant(docker(), "alice", "CHG-2")
    used = approvals.grant(cleanup(), "alice", "CHG-3", acknowledge_risks=True)
    approvals.use(used, "run-1", "bob")
    approvals.reject(cleanup(), "carol", "freeze")
    rejected = store.approval(cleanup_approval["id"])
    assert (rejected["status"], rejected["closed_by"], rejected["closed_reason"]) == ("rejected", "carol", "freeze")
    assert store.approval(docker_approval["id"])["status"] == "valid"
    assert store.approval(used["id"])["status"] == "used"
    assert last_event(store) == (
        "carol",
        "plan rejected",
        "cleanup-existing",
        {"plan_digest": cleanup().digest, "reason": "freeze"},
    )


@pytest.mark.parametrize(("by", "reason"), [(" ", "freeze"), ("carol", " ")])
def test_a_rejection_needs_who_and_why(store, by, reason):
    with pytest.raises(ApprovalError) as refused:
        Approvals(store).reject(cleanup(), by, reason)
    assert str(refused.value) == "a rejection needs --by and --reason"


def test_a_revocation_says_who_and_why_and_returns_the_closed_approval(store):
    approvals = Approvals(store)
    given = approvals.grant(docker(), "alice", "CHG-1")
    revoked = approvals.revoke(given["id"], "dave", "wrong window")
    assert (revoked["id"], revoked["status"], revoked["closed_by"], revoked["closed_reason"]) == (
        given["id"],
        "revoked",
        "dave",
        "wrong window",
    )
    assert last_event(store) == (
        "dave",
        "approval revoked",
        "docker-installation",
        {"approval_id": given["id"], "reason": "wrong window"},
    )
    with pytest.raises(ApprovalError) as again:
        approvals.revoke(given["id"], "dave", "twice")
    assert str(again.value) == f"approval {given['id']} is revoked; only a valid one can be revoked"
    with pytest.raises(ApprovalError) as unknown:
        approvals.revoke("nope", "dave", "x")
    assert str(unknown.value) == "no approval nope; see `raydeploy approvals`"


def test_listing_approvals_filters_by_checkpoint(store):
    approvals = Approvals(store)
    approvals.grant(docker(), "alice", "CHG-1")
    approvals.grant(cleanup(), "alice", "CHG-2", acknowledge_risks=True)
    assert [a["checkpoint"] for a in approvals.all("docker-installation")] == ["docker-installation"]
    assert len(approvals.all()) == 2


def test_an_expired_approval_is_closed_and_audited_by_whoever_noticed(store):
    approvals = Approvals(store)
    stale = approvals.grant(docker(), "alice", "CHG-1", ttl=timedelta(seconds=-1))
    fresh = approvals.grant(docker(), "alice", "CHG-2")
    # Listed first (newest first): an approval still valid does not end the search for expired ones.
    store.db.execute("UPDATE approvals SET created_at='2999-01-01T00:00:00Z' WHERE id=?", (fresh["id"],))
    approvals.expire()
    assert store.approval(stale["id"])["status"] == "expired" and store.approval(fresh["id"])["status"] == "valid"
    assert last_event(store) == ("raydeploy", "approval expired", "docker-installation", {"approval_id": stale["id"]})


def test_find_looks_at_the_plans_checkpoint_only_and_explains_each_refusal(store):
    approvals = Approvals(store)
    approvals.grant(docker(), "alice", "CHG-0")
    decision = approvals.find(cleanup())
    assert decision.approval is None and decision.reason == "no valid approval for cleanup-existing"
    first = approvals.grant(cleanup(fingerprint="fp-old"), "alice", "CHG-1", acknowledge_risks=True)
    second = approvals.grant(cleanup("grafana"), "alice", "CHG-2", acknowledge_risks=True)
    decision = approvals.find(cleanup())
    assert decision.approval is None
    assert (
        decision.reason.split("; ")[0]
        == f"approval {second['id']} was given for plan {second['plan_digest']}, the plan is now {cleanup().digest}: worker-1: +Remove container ray_head ($ echo Remove container ray_head), -Remove container grafana ($ echo Remove container grafana)"
    )
    assert (
        decision.reason.split("; ")[-1]
        == f"approval {first['id']} was given for another inventory (its hosts or data changed)"
    )
    good = approvals.grant(cleanup(), "alice", "CHG-3", acknowledge_risks=True)
    decision = approvals.find(cleanup())
    assert decision.approval["id"] == good["id"] and decision.reason == ""


def test_an_approval_without_acknowledged_risks_never_lets_a_destructive_plan_run(store):
    plan = cleanup()
    legacy = dict(Approvals(store).grant(docker(), "alice", "CHG-1"))
    legacy.update(id="legacy1", checkpoint="cleanup-existing", plan_digest=plan.digest, fingerprint="fp1")
    store.insert_approval({key: value for key, value in legacy.items() if value is not None})
    good = Approvals(store).grant(plan, "bob", "CHG-2", acknowledge_risks=True)
    store.close_approval(good["id"], "revoked")
    decision = Approvals(store).find(plan)
    assert decision.approval is None and decision.reason == "approval legacy1 does not acknowledge the risks"


def test_separation_of_duties_looks_past_a_self_approval_to_another_persons(store):
    approvals = Approvals(store, separation_of_duties=True)
    other = approvals.grant(cleanup(), "bob", "CHG-2", acknowledge_risks=True)
    own = approvals.grant(cleanup(), "alice", "CHG-1", acknowledge_risks=True)
    assert approvals.find(cleanup(), requested_by="alice").approval["id"] == other["id"]
    store.close_approval(other["id"], "revoked")
    assert approvals.find(cleanup(), requested_by="alice").reason == (
        f"approval {own['id']} was given by alice, who requested this run; with separation of duties another "
        f"person must approve a destructive checkpoint"
    )
    assert approvals.find(docker(), requested_by="alice").approval is None  # another checkpoint, none given


def test_using_an_approval_records_the_run_and_audits_who_used_whose(store):
    approvals = Approvals(store)
    given = approvals.grant(docker(), "alice", "CHG-1")
    approvals.use(given, "run-7", "bob")
    assert store.approval(given["id"])["used_by_run"] == "run-7"
    assert last_event(store) == (
        "bob",
        "approval used",
        "docker-installation",
        {"approval_id": given["id"], "run_id": "run-7", "approved_by": "alice"},
    )
    with pytest.raises(ApprovalError) as twice:
        approvals.use(given, "run-8", "bob")
    assert str(twice.value) == f"approval {given['id']} was used or withdrawn meanwhile"


def test_an_approval_file_holds_who_why_risks_and_expiry(store):
    plan = cleanup()
    expires = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")  # no zone: UTC
    write_file(
        store,
        "a.json",
        {
            "checkpoint": "cleanup-existing",
            "approved_by": "dana",
            "reason": "CHG-9",
            "acknowledge_risks": True,
            "expires_at": expires,
        },
    )
    write_file(store, "other.json", {"checkpoint": "docker-installation", "approved_by": "dana", "reason": "CHG-8"})
    imported = Approvals(store).import_files(plan)
    assert [(a["approved_by"], a["reason"], a["acknowledge_risks"], a["source"]) for a in imported] == [
        ("dana", "CHG-9", 1, "file a.json")
    ]
    assert abs(
        datetime.fromisoformat(imported[0]["expires_at"]) - datetime.fromisoformat(expires + "+00:00")
    ) < timedelta(seconds=2)
    recorded = store.directory / "approvals" / "recorded"
    assert [path.name.endswith("-a.json") for path in recorded.iterdir()] == [True]
    assert recorded.stat().st_mode & 0o777 == 0o700
    assert (store.directory / "approvals" / "other.json").exists(), "another checkpoint's file waits for its plan"


def test_an_approval_file_without_expiry_lasts_the_default_hour(store):
    write_file(store, "a.json", {"checkpoint": "docker-installation", "approved_by": "dana", "reason": "CHG-9"})
    (approval,) = Approvals(store).import_files(docker())
    lasts = datetime.fromisoformat(approval["expires_at"]) - datetime.fromisoformat(approval["created_at"])
    assert lasts == timedelta(hours=1)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("[1, 2]", "not a JSON object"),
        (
            {"checkpoint": "cleanup-existing", "approved_by": "dana", "acknowledge_risks": True},
            "an approval needs a reason (--reason)",
        ),
        (
            {"checkpoint": "cleanup-existing", "reason": "CHG", "acknowledge_risks": True},
            "an approval needs who gives it (--by)",
        ),
        (
            {"checkpoint": "cleanup-existing", "approved_by": "dana", "reason": "CHG"},
            "cleanup-existing is destructive: approve it with --acknowledge-risks after reading its plan",
        ),
        (
            {
                "checkpoint": "cleanup-existing",
                "approved_by": "d",
                "reason": "C",
                "acknowledge_risks": True,
                "expires_at": "2020-01-01T00:00:00Z",
            },
            "expired at 2020-01-01T00:00:00Z",
        ),
    ],
)
def test_a_refused_approval_file_is_audited_with_its_name_and_why(store, body, why):
    write_file(store, "x.json", body)
    assert Approvals(store).import_files(cleanup()) == []
    refusal = [event for event in store.audit.events() if event.details.get("file") == "x.json"]
    assert [(e.actor, e.event, e.target, e.details) for e in refusal] == [
        ("raydeploy", "approval refused", "cleanup-existing", {"file": "x.json", "why": why})
    ]
    assert store.approvals() == []


def test_an_approval_file_for_another_plan_names_both_digests(store):
    write_file(
        store, "x.json", {"checkpoint": "docker-installation", "approved_by": "d", "reason": "C", "plan_digest": "0123"}
    )
    Approvals(store).import_files(docker())
    assert store.audit.events()[-1].details["why"] == f"plan_digest 0123 is not the current plan {docker().digest}"


def test_what_changed_since_an_approval_is_told_per_host_or_as_a_new_plan_format(store):
    approval = Approvals(store).grant(cleanup(), "alice", "CHG-1", acknowledge_risks=True)
    same_operations = cleanup()
    same_operations.hosts["worker-1"]["operations"][0]["commands"][0]["sha256"] = "other"
    assert changed_since(approval, same_operations) == "worker-1: Remove container ray_head: commands changed"
    two_hosts = plan_of("cleanup-existing", "fp1", {"worker-1": ["Remove container grafana"], "worker-2": ["Remove x"]})
    assert changed_since(approval, two_hosts).count("; ") == 1
    assert changed_since(approval, cleanup()) == "the same operations, other inputs"
    for old in ({"format": 1}, {"hosts": {}, "format": 0}):
        assert changed_since({"plan_summary": json.dumps(old)}, cleanup()) == (
            "it was made by an earlier raydeploy; plan and approve again"
        )


def test_an_approval_files_expiry_keeps_its_time_zone(store):
    in_two_hours_east = datetime.now(UTC).astimezone(timezone(timedelta(hours=2))) + timedelta(minutes=10)
    write_file(
        store,
        "a.json",
        {
            "checkpoint": "docker-installation",
            "approved_by": "d",
            "reason": "C",
            "expires_at": in_two_hours_east.isoformat(),
        },
    )
    (approval,) = Approvals(store).import_files(docker())
    assert abs(datetime.fromisoformat(approval["expires_at"]) - in_two_hours_east) < timedelta(seconds=2)


def test_approval_times_are_utc_whatever_the_machines_zone(store, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        approval = Approvals(store).grant(docker(), "alice", "CHG-1")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert abs(datetime.fromisoformat(approval["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)


def test_find_looks_past_an_approval_for_another_inventory_or_without_acknowledged_risks(store):
    approvals = Approvals(store)
    good = approvals.grant(cleanup(), "alice", "CHG-1", acknowledge_risks=True)
    approvals.grant(cleanup(fingerprint="fp-old"), "alice", "CHG-2", acknowledge_risks=True)  # newer, other inventory
    assert approvals.find(cleanup()).approval["id"] == good["id"]
    legacy = dict(store.approval(good["id"]), id="legacy2", acknowledge_risks=0, created_at="2999-01-01T00:00:00Z")
    store.insert_approval({key: value for key, value in legacy.items() if value is not None})  # newest, no risks
    assert approvals.find(cleanup()).approval["id"] == good["id"]


def test_an_approval_file_for_another_checkpoint_does_not_stop_the_next_file(store):
    write_file(store, "0-other.json", {"checkpoint": "docker-installation", "approved_by": "d", "reason": "C"})
    write_file(
        store,
        "1-this.json",
        {"checkpoint": "cleanup-existing", "approved_by": "d", "reason": "C", "acknowledge_risks": True},
    )
    assert [a["source"] for a in Approvals(store).import_files(cleanup())] == ["file 1-this.json"]


def test_what_changed_on_two_hosts_is_told_host_by_host(store):
    approval = Approvals(store).grant(cleanup(), "alice", "CHG-1", acknowledge_risks=True)
    two_hosts = plan_of("cleanup-existing", "fp1", {"worker-1": [], "worker-2": ["Remove x"]})
    assert changed_since(approval, two_hosts) == (
        "worker-1: -Remove container ray_head ($ echo Remove container ray_head); worker-2: absent -> planned"
    )


def upgrade(fingerprint: str = "fp1"):
    """ray-deployment's plan of a new Ray release: the head says it restarts the cluster."""
    plan = plan_of(
        "ray-deployment", fingerprint, {"head": ["Ray head container"], "worker-1": ["Ray worker container"]}
    )
    restart = {"kind": "cluster-restart", "summary": "cluster-wide restart: Ray 2.59.0 -> 2.60.0 on 2 nodes"}
    plan.hosts["head"]["disruptions"] = [restart]
    return plan


def test_ray_deployment_needs_an_approval_only_for_a_plan_that_restarts_the_cluster(store):
    plain = plan_of("ray-deployment", "fp1", {"worker-1": ["Ray worker container"]})
    with pytest.raises(ApprovalError, match="ray-deployment needs no approval; it runs without one"):
        Approvals(store).grant(plain, "alice", "CHG-1", acknowledge_risks=True)
    with pytest.raises(ApprovalError, match="ray-deployment is disruptive: approve it with --acknowledge-risks"):
        Approvals(store).grant(upgrade(), "alice", "CHG-1")
    assert last_event(store)[1:3] == ("approval refused", "ray-deployment")
    approval = Approvals(store).grant(upgrade(), "alice", "CHG-1", acknowledge_risks=True)
    assert Approvals(store).find(upgrade(), requested_by="bob").approval["id"] == approval["id"]


def test_a_disruptive_plan_is_approved_by_another_person_under_separation_of_duties(store):
    Approvals(store, separation_of_duties=True).grant(upgrade(), "alice", "CHG-1", acknowledge_risks=True)
    own = Approvals(store, separation_of_duties=True).find(upgrade(), requested_by="alice")
    assert own.approval is None and "another person must approve a disruptive plan" in own.reason
    assert Approvals(store, separation_of_duties=True).find(upgrade(), requested_by="bob").approval is not None


def test_an_approval_of_a_disruptive_plan_without_the_risks_acknowledged_does_not_count(store):
    approval = Approvals(store).grant(upgrade(), "alice", "CHG-1", acknowledge_risks=True)
    with store.transaction():  # as an older raydeploy, or a hand-edited database, could have left it
        store.db.execute("UPDATE approvals SET acknowledge_risks=0 WHERE id=?", (approval["id"],))
    found = Approvals(store).find(upgrade(), requested_by="bob")
    assert found.approval is None and f"approval {approval['id']} does not acknowledge the risks" in found.reason


def test_an_approval_that_cannot_go_on_the_trail_is_not_given(store):
    store.audit.append("alice", "run started", "run-1")  # the trail exists, with its key
    store.audit.key_of_trail().path.unlink()
    with pytest.raises(AuditKeyError):
        Approvals(store).grant(docker(), approved_by="bob", reason="tested")
    assert store.approvals() == []


def test_a_revocation_or_use_that_cannot_go_on_the_trail_leaves_the_approval_valid(store):
    approvals = Approvals(store)
    granted = approvals.grant(docker(), approved_by="bob", reason="tested")
    store.audit.key_of_trail().path.unlink()
    with pytest.raises(AuditKeyError):
        approvals.revoke(granted["id"], "carol", "changed my mind")
    with pytest.raises(AuditKeyError):
        approvals.use(granted, "run-1", "alice")
    assert approvals.get(granted["id"])["status"] == "valid"
