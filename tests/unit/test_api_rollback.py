"""Upgrade and rollback over HTTP without hosts: the plan pyinfra would make is replaced by a recorded
one (the lab tests plan for real, tests/lab/test_upgrade.py); everything the API decides is real."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from deploys.recorded_specs import spec_of, write_spec
from raydeploy.api.app import create_app
from raydeploy.api.tokens import TokenStore
from tests.conftest import plan_of
from tests.unit.test_api import assert_error_shape, auth
from validate.inventory import load

RUN = "20261130T101500Z-1a2b3c"
OLDER_IMAGE = "rayproject/ray:2.59.0-py311-cpu"


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The API on an inventory of two hosts, its plans recorded: every plan restarts the cluster."""
    from raydeploy.api import context

    inventory = tmp_path / "inventory.py"
    inventory.write_text('head = ["head"]\nworkers = ["worker-1"]\n')
    planned = []

    def make_plan(inventory, checkpoint, state_dir, data=None):
        planned.append((checkpoint.name, data))
        plan = plan_of(checkpoint.name, "fp", {"head": ["Ray head container"]})
        plan.hosts["head"]["disruptions"] = [{"kind": "cluster-restart", "summary": "cluster-wide restart"}]
        return plan

    monkeypatch.setattr(context, "make_plan", make_plan)
    app = create_app(str(inventory), tmp_path / "state", separation_of_duties=False)
    tokens = TokenStore(app.state.store)
    client = TestClient(app, raise_server_exceptions=False)
    client.issued = {role: tokens.create(f"user-{role}", role, "t")[1] for role in ("viewer", "operator", "approver")}
    client.store, client.planned, client.inventory = app.state.store, planned, str(inventory)
    return client


def record_older_spec(served) -> None:
    """A successful run RUN recorded a spec on Ray 2.59.0 (the inventory now says the default release)."""
    spec = json.loads(json.dumps(spec_of(load(served.inventory).cluster)))
    for host in spec["hosts"].values():
        host["settings"]["ray_image"] = OLDER_IMAGE
    body = {key: spec[key] for key in ("hosts", "monitoring")}
    from deploys.recorded_specs import digest_of

    write_spec(served.store.directory, RUN, {**body, "digest": digest_of(body)})


def test_an_upgrade_is_an_ordinary_execute_that_waits_for_an_approval_with_the_risks_acknowledged(served):
    operator, approver = auth(served.issued["operator"]), auth(served.issued["approver"])
    refused = served.post("/api/v1/checkpoints/ray-deployment", json={"force": True}, headers=operator)
    assert refused.status_code == 400 and refused.json()["error"] == "APPROVAL_REQUIRED", refused.text
    info = refused.json()["approval_info"]
    assert info["disruptive"] is True and "acknowledge_risks: true" in info["message"], info
    assert served.store.runs() == [], "nothing ran"
    unacknowledged = served.post("/api/v1/approvals/ray-deployment", json={"reason": "CHG-17"}, headers=approver)
    assert "acknowledge" in assert_error_shape(unacknowledged, 400, "APPROVAL_REFUSED")["message"]
    granted = served.post(
        "/api/v1/approvals/ray-deployment", json={"reason": "CHG-17", "acknowledge_risks": True}, headers=approver
    )
    assert granted.status_code in (200, 201), granted.text


def test_a_rollback_with_nothing_recorded_is_refused_before_planning(served):
    viewer = auth(served.issued["viewer"])
    assert_error_shape(
        served.post("/api/v1/actions/rollback/plan", json={}, headers=viewer), 400, "NOTHING_TO_ROLL_BACK"
    )
    missing = served.post("/api/v1/actions/rollback/plan", json={"to": RUN}, headers=viewer)
    assert "recorded no spec" in assert_error_shape(missing, 400, "INVALID_REQUEST")["message"]
    assert served.planned == []


def test_a_rollback_plans_the_recorded_run_and_waits_for_an_approval_bound_to_it(served):
    record_older_spec(served)
    viewer, operator = auth(served.issued["viewer"]), auth(served.issued["operator"])
    plan = served.post("/api/v1/actions/rollback/plan", json={}, headers=viewer)
    assert plan.status_code == 200, plan.text
    assert served.planned[-1] == ("rollback", {"rollback_to": RUN}), (
        "by default: the newest spec unlike the inventory's"
    )
    assert "DISRUPTIVE (head): cluster-wide restart" in plan.json()["text"]
    assert_error_shape(served.post("/api/v1/actions/rollback", json={}, headers=viewer), 403, "FORBIDDEN")
    waiting = served.post("/api/v1/actions/rollback", json={"to": RUN}, headers=operator)
    assert waiting.status_code == 400 and waiting.json()["error"] == "APPROVAL_REQUIRED", waiting.text
    approval = {"reason": "back", "acknowledge_risks": True, "data": {"rollback_to": RUN}}
    assert_error_shape(served.post("/api/v1/approvals/rollback", json=approval, headers=operator), 403, "FORBIDDEN")
    granted = served.post("/api/v1/approvals/rollback", json=approval, headers=auth(served.issued["approver"]))
    assert granted.status_code in (200, 201), granted.text
    assert served.planned[-1] == ("rollback", {"rollback_to": RUN}), "the approval binds the run gone back to"
    assert granted.json()["plan_digest"] == plan.json()["digest"]
