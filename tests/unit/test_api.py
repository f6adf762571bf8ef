"""The REST API without hosts: tokens and roles, the Error shape, limits, and checkpoint status from the state."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest
import requests
from fastapi.testclient import TestClient

from raydeploy.api.app import create_app
from raydeploy.api.tokens import TokenError, TokenStore
from tests.conftest import BIN, REPO


@pytest.fixture
def api(tmp_path):
    app = create_app("inventories/lab.py", tmp_path / "state")
    tokens = TokenStore(app.state.store)
    issued = {
        role: tokens.create(f"user-{role}", role, "test")[1] for role in ("viewer", "operator", "approver", "admin")
    }
    client = TestClient(app, raise_server_exceptions=False)
    client.issued, client.store = issued, app.state.store
    return client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error_shape(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "timestamp", "details"} and body["error"] == error
    assert "Traceback" not in response.text
    return body


def test_healthz_needs_no_token(api):
    assert api.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    "path", ["/api/v1/checkpoints", "/api/v1/checkpoints/ray-deployment", "/api/v1/runs", "/api/v1/audit"]
)
def test_every_path_refuses_a_request_without_a_valid_token_and_audits_it(api, path):
    assert_error_shape(api.get(path), 401, "UNAUTHORIZED")
    assert_error_shape(api.get(path, headers=auth("rdt_forged")), 401, "UNAUTHORIZED")
    failures = [e for e in api.store.audit.events() if e.event == "api authentication failed"]
    assert len(failures) == 2 and all("rdt_forged" not in json.dumps(e.details) for e in failures)


def test_roles_are_ordered_and_a_weak_role_is_refused_with_403(api):
    assert api.get("/api/v1/checkpoints", headers=auth(api.issued["viewer"])).status_code == 200
    body = assert_error_shape(api.get("/api/v1/audit", headers=auth(api.issued["approver"])), 403, "FORBIDDEN")
    assert "needs the admin role" in body["message"]
    assert api.get("/api/v1/audit", headers=auth(api.issued["admin"])).status_code == 200
    refusals = [e for e in api.store.audit.events() if e.event == "api authorisation refused"]
    assert len(refusals) == 1 and refusals[0].actor == "user-approver" and refusals[0].details["needs"] == "admin"


def test_a_revoked_token_stops_working_at_once(api):
    TokenStore(api.store).revoke("user-viewer", "test")
    assert_error_shape(api.get("/api/v1/checkpoints", headers=auth(api.issued["viewer"])), 401, "UNAUTHORIZED")


def test_tokens_are_stored_only_as_hashes(api):
    dump = "\n".join(api.store.db.iterdump())
    assert not any(token in dump for token in api.issued.values())
    with pytest.raises(TokenError, match="role must be one of"):
        TokenStore(api.store).create("eve", "root", "test")
    with pytest.raises(TokenError, match="exists; revoke it first"):
        TokenStore(api.store).create("user-admin", "admin", "test")


def test_unknown_checkpoints_are_404_listing_the_valid_ones(api):
    body = assert_error_shape(
        api.get("/api/v1/checkpoints/warp-drive", headers=auth(api.issued["viewer"])), 404, "NOT_FOUND"
    )
    assert "ray-deployment" in body["details"]["valid"]


def test_checkpoint_status_follows_the_seeds_shape_from_the_recorded_runs(api):
    store = api.store
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", ["ray-deployment"])
    store.start_checkpoint("run-1", "ray-deployment")
    store.record_operations(
        "run-1",
        "ray-deployment",
        [("head", "Ray head container", "changed", ""), ("worker-1", "Ray worker container", "failed", "boom")],
    )
    store.finish_checkpoint("run-1", "ray-deployment", "failed", 1, ["worker-1"], "worker-1: boom")
    listed = api.get("/api/v1/checkpoints", headers=auth(api.issued["viewer"])).json()
    assert next(c["checkpoint"] for c in listed) == "prerequisites-check" and listed[0]["status"] == "NOT_FOUND"
    ray = api.get("/api/v1/checkpoints/ray-deployment", headers=auth(api.issued["viewer"])).json()
    assert ray["status"] == "FAILED" and ray["total_nodes"] == 2 and ray["passed_nodes"] == 1
    assert ray["nodes"]["worker-1"]["status"] == "FAILED" and ray["nodes"]["head"]["approval_required"] is False
    run = api.get("/api/v1/runs/run-1", headers=auth(api.issued["viewer"])).json()
    assert run["checkpoint_runs"][0]["status"] == "failed"
    assert_error_shape(api.get("/api/v1/runs/nope", headers=auth(api.issued["viewer"])), 404, "NOT_FOUND")


def test_bodies_are_capped_and_bad_requests_get_the_error_shape(api):
    big = api.post("/api/v1/checkpoints", content=b"x" * 70_000, headers=auth(api.issued["admin"]))
    assert_error_shape(big, 413, "PAYLOAD_TOO_LARGE")
    assert_error_shape(api.post("/api/v1/runs", headers=auth(api.issued["admin"])), 405, "METHOD_NOT_ALLOWED")


def test_the_request_rate_per_token_is_limited(api, monkeypatch):
    import raydeploy.api.app as module

    monkeypatch.setattr(module, "RATE_LIMIT", (3, 60.0))
    app = create_app("inventories/lab.py", api.store.directory)
    client = TestClient(app, raise_server_exceptions=False)
    statuses = [client.get("/api/v1/runs", headers=auth(api.issued["viewer"])).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_server_refuses_a_public_address_without_tokens_and_serves_loopback(tmp_path):
    env = {**os.environ, "RAYDEPLOY_STATE_DIR": str(tmp_path / "state")}
    refused = subprocess.run(
        [str(BIN / "raydeploy"), "api", "--host", "0.0.0.0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "not loopback" in refused.stderr
    created = subprocess.run(
        [str(BIN / "raydeploy"), "api", "token", "create", "--name", "ci", "--role", "viewer"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token = created.stdout.strip()
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "raydeploy"), "api", "--port", str(port)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        listed = requests.get(f"http://127.0.0.1:{port}/api/v1/checkpoints", headers=auth(token), timeout=5)
        assert listed.status_code == 200 and len(listed.json()) == 6
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/checkpoints", timeout=5).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_committed_openapi_document_is_the_one_the_app_serves(api):
    from raydeploy.api.openapi import COMMITTED

    served = api.get("/openapi.json").json()
    assert served == json.loads(COMMITTED.read_text()), (
        "raydeploy/api/openapi.json is stale: python -m raydeploy.api.openapi > raydeploy/api/openapi.json"
    )
    for path in (
        "/api/v1/cluster/status",
        "/api/v1/cluster/health",
        "/api/v1/checkpoints",
        "/api/v1/nodes/{node_name}",
    ):
        assert path in served["paths"]
