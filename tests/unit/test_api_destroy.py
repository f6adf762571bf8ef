"""destroy over HTTP without hosts: who may request it, who may approve it, and that its arguments reach the plan."""

from __future__ import annotations

from fastapi.testclient import TestClient

from raydeploy.api.app import create_app
from raydeploy.api.tokens import TokenStore
from tests.unit.test_api import api, assert_error_shape, auth, loopback  # noqa: F401 (fixtures)


def test_requesting_a_destroy_needs_the_operator_role(api):  # noqa: F811
    body = assert_error_shape(
        api.post("/api/v1/actions/destroy", json={}, headers=auth(api.issued["viewer"])), 403, "FORBIDDEN"
    )
    assert "needs the operator role" in body["message"]
    assert api.store.runs() == []


def test_approving_a_destroy_needs_the_approver_role(api):  # noqa: F811
    request = {"reason": "end of life", "acknowledge_risks": True, "data": {"purge_data": "true"}}
    body = assert_error_shape(
        api.post("/api/v1/approvals/destroy", json=request, headers=auth(api.issued["operator"])), 403, "FORBIDDEN"
    )
    assert "needs the approver role" in body["message"]


def test_whoever_requested_a_destroy_cannot_approve_it_under_separation_of_duties(api):  # noqa: F811
    store = api.store
    store.start_run("run-d", "user-approver", "POST /api/v1/actions/destroy", "inv", "fp", ["destroy"])
    store.finish_run("run-d", "awaiting-approval", "destroy")
    body = assert_error_shape(
        api.post(
            "/api/v1/approvals/destroy",
            json={"reason": "mine", "acknowledge_risks": True},
            headers=auth(api.issued["approver"]),
        ),
        403,
        "SEPARATION_OF_DUTIES",
    )
    assert body["details"]["run_id"] == "run-d"


def test_a_destroy_request_is_409_while_a_run_holds_the_lock(api):  # noqa: F811
    lock = api.store.acquire("20261130T000000Z-cli", "alice")
    try:
        assert_error_shape(
            api.post("/api/v1/actions/destroy", json={"purge_data": True}, headers=auth(api.issued["operator"])),
            409,
            "RUN_IN_PROGRESS",
        )
    finally:
        api.store.release(lock)
    assert api.store.runs() == []


def test_an_approvals_data_is_the_plans_data(tmp_path, monkeypatch):
    """The approval endpoint plans destroy with the body's data: it is what the digest binds."""
    from raydeploy.api import context

    seen = []

    def planned(inventory, checkpoint, state_dir, data=None):
        seen.append((checkpoint.name, data))
        raise context.PlanError("stop here")

    monkeypatch.setattr(context, "make_plan", planned)
    app = create_app("inventories/lab.py", tmp_path / "state", separation_of_duties=False)
    token = TokenStore(app.state.store).create("carol", "approver", "test")[1]
    client = TestClient(app, raise_server_exceptions=False)
    request = {"reason": "r", "acknowledge_risks": True, "data": {"purge_data": "true"}}
    assert_error_shape(client.post("/api/v1/approvals/destroy", json=request, headers=auth(token)), 503, "PLAN_FAILED")
    assert seen == [("destroy", {"purge_data": "true"})]


def test_a_viewer_reads_the_destroy_plan_its_approval_binds_to(tmp_path, monkeypatch):
    """POST /api/v1/actions/destroy/plan plans destroy with the body's arguments, as the approval does."""
    from raydeploy.api import context
    from tests.conftest import plan_of

    seen = []

    def planned(inventory, checkpoint, state_dir, data=None):
        seen.append((checkpoint.name, data))
        return plan_of(checkpoint.name, "fp", {"head": ["Remove container ray-head"]})

    monkeypatch.setattr(context, "make_plan", planned)
    app = create_app("inventories/lab.py", tmp_path / "state", separation_of_duties=False)
    tokens = TokenStore(app.state.store)
    viewer, approver = (tokens.create(name, role, "test")[1] for name, role in (("v", "viewer"), ("a", "approver")))
    client = TestClient(app, raise_server_exceptions=False)
    plan = client.post("/api/v1/actions/destroy/plan", json={"purge_data": True}, headers=auth(viewer))
    assert plan.status_code == 200, plan.text
    assert seen == [("destroy", {"purge_data": "true"})] and "Remove container ray-head" in plan.json()["text"]
    request = {"reason": "r", "acknowledge_risks": True, "data": {"purge_data": "true"}}
    granted = client.post("/api/v1/approvals/destroy", json=request, headers=auth(approver))
    assert granted.status_code == 200 and granted.json()["plan_digest"] == plan.json()["digest"], granted.text
    assert client.post("/api/v1/actions/destroy/plan", json={}, headers={}).status_code == 401
