"""The REST API without hosts: tokens and roles, the Error shape, limits, and checkpoint status from the state."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from fastapi.testclient import TestClient

from raydeploy.api import views
from raydeploy.api.app import create_app
from raydeploy.api.context import Service
from raydeploy.api.tokens import TokenError, TokenStore
from raydeploy.checkpoints import NAMES
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


def test_deployment_status_follows_the_checkpoints_last_results(api):
    def deployment() -> tuple[str, list[str]]:
        status = api.get("/api/v1/cluster/status", headers=auth(api.issued["viewer"])).json()
        return status["deployment_status"], status["completed_checkpoints"]

    def ran(run_id: str, name: str, status: str) -> None:
        api.store.start_checkpoint(run_id, name)
        if status != "running":
            api.store.finish_checkpoint(run_id, name, status)

    # No run yet: the seed's enum has no "not started"; nothing completed, nothing failed reads IN_PROGRESS.
    assert deployment() == ("IN_PROGRESS", [])
    api.store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", list(NAMES))
    ran("run-1", NAMES[0], "succeeded")
    ran("run-1", NAMES[1], "failed")
    assert deployment() == ("FAILED", list(NAMES[:1]))
    api.store.start_run("run-2", "alice", "POST /api/v1/checkpoints (force)", "inv.py", "fp", list(NAMES[1:]))
    ran("run-2", NAMES[2], "running")  # a running checkpoint outranks an earlier failure
    assert deployment() == ("IN_PROGRESS", list(NAMES[:1]))
    api.store.finish_checkpoint("run-2", NAMES[2], "succeeded")
    for name in (NAMES[1], *NAMES[3:]):
        ran("run-2", name, "succeeded")
    assert deployment() == ("COMPLETED", list(NAMES))


def test_a_cluster_wide_validation_result_is_no_node_of_the_checkpoint(api):
    store = api.store
    store.start_run("run-2", "alice", "raydeploy deploy", "inv.py", "fp", ["final-validation"])
    store.start_checkpoint("run-2", "final-validation")
    store.record_operations("run-2", "final-validation", [("head", "containers running", "unchanged", "")])
    store.record_validation(
        "run-2",
        "final-validation",
        [("head", "container ray-head", "pass", ""), ("cluster", "ray smoke job", "fail", "2 of 3 nodes ran it")],
    )
    store.finish_checkpoint("run-2", "final-validation", "failed", 0, ["cluster"], "cluster: ray smoke job")
    checked = api.get("/api/v1/checkpoints/final-validation", headers=auth(api.issued["viewer"])).json()
    assert set(checked["nodes"]) == {"head"} and checked["total_nodes"] == 1, checked
    assert checked["status"] == "FAILED" and "ray smoke job" in checked["message"]
    assert checked["nodes"]["head"]["approval_required"] is False
    assert checked["nodes"]["head"]["destructive_operation"] is False


def test_cluster_health_is_answered_from_its_cache_until_the_checks_are_five_seconds_old(tmp_path, monkeypatch):
    now, checks = [1000.0], []
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: now[0]))
    monkeypatch.setattr(views, "compute_health", lambda inventory, store: checks.append(now[0]) or {"run": len(checks)})
    served = Service("inventories/lab.py", tmp_path)
    first = views.cluster_health(served)
    now[0] = 1004.5
    cached = views.cluster_health(served)
    now[0] = 1005.0
    fresh = views.cluster_health(served)
    assert (first, cached, fresh) == ({"run": 1, "age_s": 0.0}, {"run": 1, "age_s": 4.5}, {"run": 2, "age_s": 0.0})
    assert checks == [1000.0, 1005.0]


def test_bodies_are_capped_and_bad_requests_get_the_error_shape(api):
    big = api.post("/api/v1/checkpoints", content=b"x" * 70_000, headers=auth(api.issued["admin"]))
    assert_error_shape(big, 413, "PAYLOAD_TOO_LARGE")
    assert_error_shape(api.post("/api/v1/runs", headers=auth(api.issued["admin"])), 405, "METHOD_NOT_ALLOWED")


def test_the_request_rate_per_token_is_limited(api):
    app = create_app("inventories/lab.py", api.store.directory, rate_limit=3)
    client = TestClient(app, raise_server_exceptions=False)
    responses = [client.get("/api/v1/runs", headers=auth(api.issued["viewer"])) for _ in range(4)]
    assert [response.status_code for response in responses] == [200, 200, 200, 429]
    body = assert_error_shape(responses[-1], 429, "RATE_LIMITED")
    assert 1 <= int(responses[-1].headers["Retry-After"]) <= 60 and body["details"]["retry_after_s"] >= 1
    assert client.get("/api/v1/runs", headers=auth(api.issued["admin"])).status_code == 200  # per token


def test_only_an_authenticated_token_counts_against_the_rate(api):
    app = create_app("inventories/lab.py", api.store.directory, rate_limit=2)
    client = TestClient(app, raise_server_exceptions=False)
    forged = [client.get("/api/v1/runs", headers=auth("rdt_forged")).status_code for _ in range(3)]
    assert forged == [401, 401, 401]
    statuses = [client.get("/api/v1/runs", headers=auth(api.issued["viewer"])).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


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


# Runs, approvals, plans, monitoring: everything that needs no host ---------------------------------

LOOPBACK_INVENTORY = """
head = [("head", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, "ssh_user": "root",
                   "dashboard_access_url": "http://127.0.0.1:{port}",
                   "prometheus_access_url": "http://127.0.0.1:{port}", "grafana_enabled": {grafana}}})]
"""


@pytest.fixture
def loopback(tmp_path):
    """An API over an inventory whose only host is a closed port on loopback: every upstream refuses."""

    made = []

    def make(grafana: bool = False, **options):
        made.append(len(made))
        inventory = tmp_path / f"inventory-{grafana}.py"
        inventory.write_text(LOOPBACK_INVENTORY.format(port=free_port(), grafana=grafana))
        app = create_app(str(inventory), tmp_path / f"state-{len(made)}", **options)
        tokens = TokenStore(app.state.store)
        client = TestClient(app, raise_server_exceptions=False)
        client.issued = {
            role: tokens.create(f"user-{role}", role, "test")[1] for role in ("viewer", "operator", "approver", "admin")
        }
        client.store, client.inventory = app.state.store, inventory
        return client

    return make


def test_execute_needs_the_operator_role_and_refuses_server_owned_fields(api):
    assert_error_shape(
        api.post("/api/v1/checkpoints/ray-deployment", headers=auth(api.issued["viewer"])), 403, "FORBIDDEN"
    )
    body = assert_error_shape(
        api.post(
            "/api/v1/checkpoints/ray-deployment",
            json={"status": "COMPLETED", "execution_id": "mine"},
            headers=auth(api.issued["operator"]),
        ),
        422,
        "INVALID_REQUEST",
    )
    assert {p["field"] for p in body["details"]["problems"]} == {"body.status", "body.execution_id"}
    missing = assert_error_shape(
        api.post("/api/v1/checkpoints/warp-drive", json={}, headers=auth(api.issued["operator"])), 404, "NOT_FOUND"
    )
    assert missing["details"]["valid"][0] == "prerequisites-check"


def test_execute_is_409_while_any_run_holds_the_lock_and_starts_nothing(api):
    lock = api.store.acquire("20261129T000000Z-cli", "alice")  # a CLI run of this state directory, say
    try:
        body = assert_error_shape(
            api.post("/api/v1/checkpoints/prerequisites-check", json={}, headers=auth(api.issued["operator"])),
            409,
            "RUN_IN_PROGRESS",
        )
        assert body["details"]["run_id"] == "20261129T000000Z-cli" and "holds the lock" in body["message"]
    finally:
        api.store.release(lock)
    assert api.store.runs() == []


def test_execute_refuses_a_checkpoint_whose_predecessors_have_not_passed_unless_forced(api):
    body = assert_error_shape(
        api.post("/api/v1/checkpoints/ray-deployment", json={}, headers=auth(api.issued["operator"])),
        409,
        "PREREQUISITES_NOT_MET",
    )
    assert body["details"]["not_passed"] == ["prerequisites-check", "docker-installation", "cleanup-existing"]
    assert '"force": true' in body["message"]
    assert api.store.current_lock() is None  # the refused request gave the lock back


def test_an_approval_names_its_approver_from_the_token_and_refuses_another_name(loopback):
    client = loopback()
    request = {"approved_by": "admin", "reason": "Planned maintenance", "acknowledge_risks": True}
    assert_error_shape(
        client.post("/api/v1/approvals/cleanup-existing", json=request, headers=auth(client.issued["operator"])),
        403,
        "FORBIDDEN",
    )
    body = assert_error_shape(
        client.post("/api/v1/approvals/cleanup-existing", json=request, headers=auth(client.issued["approver"])),
        403,
        "IDENTITY_MISMATCH",
    )
    assert "'user-approver'" in body["message"]
    refused = [e for e in client.store.audit.events() if e.details.get("why") == "IDENTITY_MISMATCH"]
    assert len(refused) == 1 and refused[0].actor == "user-approver" and refused[0].details["claimed"] == "admin"
    owned = client.post(
        "/api/v1/approvals/cleanup-existing",
        json={"reason": "x", "approved_at": "2020-01-01T00:00:00Z", "status": "valid"},
        headers=auth(client.issued["approver"]),
    )
    fields = {p["field"] for p in assert_error_shape(owned, 422, "INVALID_REQUEST")["details"]["problems"]}
    assert fields == {"body.approved_at", "body.status"}
    assert_error_shape(
        client.post(
            "/api/v1/approvals/monitoring-deployment", json={"reason": "x"}, headers=auth(client.issued["approver"])
        ),
        400,
        "APPROVAL_NOT_NEEDED",
    )


def test_whoever_started_a_run_cannot_approve_its_destructive_step(loopback):
    client = loopback()
    store = client.store
    store.start_run("run-sod", "user-approver", "POST /api/v1/checkpoints/cleanup-existing", "inv", "fp", [])
    store.finish_run("run-sod", "awaiting-approval", "cleanup-existing")
    body = assert_error_shape(
        client.post(
            "/api/v1/approvals/cleanup-existing",
            json={"reason": "mine", "acknowledge_risks": True},
            headers=auth(client.issued["approver"]),
        ),
        403,
        "SEPARATION_OF_DUTIES",
    )
    assert body["details"]["run_id"] == "run-sod"


def test_planning_against_a_host_that_refuses_ssh_is_a_clear_error_not_a_traceback(loopback):
    client = loopback()
    response = client.get("/api/v1/plan/docker-installation", headers=auth(client.issued["viewer"]))
    if response.status_code == 200:  # pyinfra planned what it could: the host is listed as unreachable
        assert response.json()["unreachable"] == ["head"], response.text
    else:
        body = assert_error_shape(response, 503, "PLAN_FAILED")
        assert "head" in body["message"] or "SSH" in body["message"], body


def test_the_prometheus_proxy_reaches_only_the_configured_prometheus(loopback):
    client = loopback()
    down = assert_error_shape(
        client.get("/api/v1/monitoring/prometheus", headers=auth(client.issued["viewer"])), 503, "UPSTREAM_UNAVAILABLE"
    )
    assert "127.0.0.1" in down["message"]
    for hostile in ("http://169.254.169.254/latest", '{job="x"}&target=http://evil', "up\nHost: evil"):
        answer = client.get(
            "/api/v1/monitoring/prometheus", params={"match": hostile}, headers=auth(client.issued["viewer"])
        )
        assert_error_shape(answer, 400, "INVALID_REQUEST")


def test_grafana_dashboards_are_404_when_grafana_is_not_deployed_naming_the_setting(loopback):
    client = loopback(grafana=False)
    body = assert_error_shape(
        client.get("/api/v1/monitoring/grafana/dashboards", headers=auth(client.issued["viewer"])), 404, "NOT_DEPLOYED"
    )
    assert "grafana_enabled" in body["message"]
    assert {d["id"] for d in body["details"]["provisioned_when_deployed"]} >= {"raydeploy-hosts"}


@contextlib.contextmanager
def scripted_answers() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """A loopback HTTP server answering each GET with the next (status, body) a test puts in the list it yields,
    as an upstream (Prometheus, Grafana) could; a 302 points at a link-local address. Yields (base URL, list)."""
    import http.server
    import threading

    answers: list[tuple[int, bytes]] = []

    class Scripted(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = answers.pop(0)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", answers
    finally:
        server.shutdown()


def test_grafanas_answers_are_untrusted(tmp_path):
    """Grafana cannot run here (no image offline): a loopback server answers as a hostile Grafana would."""
    from raydeploy.api.monitoring import UpstreamError, grafana_dashboards

    with scripted_answers() as (base, answers):
        answers.append(
            (
                200,
                json.dumps(
                    [
                        {"uid": "raydeploy-hosts", "title": "Hosts\x1b[31m", "url": "/d/raydeploy-hosts/hosts"},
                        {"uid": "../../admin", "title": "escape"},
                        {"uid": "ok-2", "title": 5},
                        "junk",
                        {"uid": "c1", "title": "Containers", "url": "http://evil/d/x", "tags": ["ray", 3]},
                    ]
                ).encode(),
            )
        )
        listed = grafana_dashboards(base, "secret")
        assert listed == [
            {
                "id": "raydeploy-hosts",
                "title": "Hosts?[31m",
                "url": f"{base}/d/raydeploy-hosts/hosts",
                "description": "",
            },
            {"id": "c1", "title": "Containers", "url": f"{base}/d/c1", "description": "ray"},
        ]
        answers.append((302, b""))
        with pytest.raises(UpstreamError, match="answered 302"):
            grafana_dashboards(base, "secret")
        answers.append((200, b"x" * (2 * 1024 * 1024)))
        with pytest.raises(UpstreamError, match="more than"):
            grafana_dashboards(base, "secret")
        answers.append((200, b'{"not": "a list"}'))
        with pytest.raises(UpstreamError, match="not a list"):
            grafana_dashboards(base, "secret")


def test_a_streamed_body_over_the_cap_is_refused_too(api):
    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    response = api.post("/api/v1/approvals/cleanup-existing", content=chunks(), headers=auth(api.issued["approver"]))
    assert_error_shape(response, 413, "PAYLOAD_TOO_LARGE")


def test_cors_is_closed_unless_origins_are_configured(loopback):
    preflight = {"Origin": "https://ops.example.com", "Access-Control-Request-Method": "GET"}
    closed = loopback().options("/api/v1/checkpoints", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = loopback(cors_origins=["https://ops.example.com"])
    assert opened.options("/api/v1/checkpoints", headers=preflight).headers["access-control-allow-origin"] == (
        "https://ops.example.com"
    )
    other = opened.options("/api/v1/checkpoints", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_runs_log_streams_as_server_sent_events_until_the_run_ends(api):
    import threading

    store = api.store
    lock = store.acquire("run-live", "alice")
    store.start_run("run-live", "alice", "raydeploy deploy", "inv", "fp", ["ray-deployment"])
    log = store.log_path("run-live")
    log.write_text("--> Starting operation: Ray head\n")

    def finish():
        time.sleep(1.5)
        with log.open("a") as handle:
            handle.write("    [head] Success\n")
        store.finish_run("run-live", "succeeded")
        store.release(lock)

    threading.Thread(target=finish).start()
    with api.stream("GET", "/api/v1/runs/run-live/log", headers=auth(api.issued["viewer"])) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [block for block in text.split("\n\n") if block.strip()]
    assert events[0].startswith("id: 33\nevent: log\ndata: --> Starting operation: Ray head")
    assert "data:     [head] Success" in events[1]
    assert events[-1].startswith("event: end") and '"status": "succeeded"' in events[-1]
    resumed = api.get("/api/v1/runs/run-live/log", headers={**auth(api.issued["viewer"]), "Last-Event-ID": "33"})
    assert "Starting operation" not in resumed.text and "[head] Success" in resumed.text
    assert_error_shape(api.get("/api/v1/runs/nope/log", headers=auth(api.issued["viewer"])), 404, "NOT_FOUND")


def test_a_last_event_id_that_is_no_offset_is_a_400_not_a_crash(api):
    import asyncio

    import httpx

    api.store.start_run("run-ghost", "alice", "raydeploy deploy", "inv", "fp", ["ray-deployment"])

    async def get_log(last_event_id: bytes) -> httpx.Response:
        # Raw header bytes straight into the app: TestClient would re-encode a non-ASCII byte.
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            headers = [(b"authorization", f"Bearer {api.issued['viewer']}".encode()), (b"last-event-id", last_event_id)]
            return await client.get("/api/v1/runs/run-ghost/log", headers=headers)

    for bad in (b"\xb2", b"9" * 5000, b"-1", b"12 ", "\u0663".encode()):
        body = assert_error_shape(asyncio.run(get_log(bad)), 400, "INVALID_REQUEST")
        assert body["details"]["problems"][0]["field"] == "header.last-event-id"
    resumed = asyncio.run(get_log(b"999999999999999999"))
    assert resumed.status_code == 200 and resumed.text.startswith("event: end")


def test_a_run_that_lost_its_process_ends_its_stream_as_interrupted(api):
    api.store.start_run("run-ghost", "alice", "raydeploy deploy", "inv", "fp", ["ray-deployment"])
    text = api.get("/api/v1/runs/run-ghost/log", headers=auth(api.issued["viewer"])).text
    assert text.startswith("event: end") and '"status": "interrupted"' in text


NEEDS = {("GET", "/api/v1/audit"): "admin", ("POST", "/api/v1/checkpoints/{checkpoint_name}"): "operator"}
NEEDS[("GET", "/api/v1/audit/verify")] = "admin"
NEEDS[("POST", "/api/v1/actions/destroy")] = "operator"
NEEDS |= {
    ("POST", path): "approver"
    for path in (
        "/api/v1/approvals/{checkpoint_name}",
        "/api/v1/approvals/{checkpoint_name}/reject",
        "/api/v1/approvals/{checkpoint_name}/revoke",
    )
}
NEEDS |= {
    ("POST", "/api/v1/actions/remove-node"): "operator",
    ("POST", "/api/v1/actions/remove-node/approvals"): "approver",
    ("POST", "/api/v1/actions/rollback"): "operator",
}
NEEDS |= {
    (method, path): "admin"
    for method, path in (
        ("GET", "/api/v1/webhooks"),
        ("POST", "/api/v1/webhooks"),
        ("GET", "/api/v1/webhooks/deliveries"),
        ("DELETE", "/api/v1/webhooks/{endpoint_id}"),
        ("POST", "/api/v1/webhooks/{endpoint_id}/test"),
    )
}
BODIES = {"/api/v1/approvals/{checkpoint_name}": {"reason": "r", "acknowledge_risks": True}}
BODIES["/api/v1/webhooks"] = {"url": "http://127.0.0.1:9/refused-without-allow-private"}
BODIES["/api/v1/actions/remove-node"] = BODIES["/api/v1/actions/remove-node/plan"] = {"hosts": ["worker-2"]}
BODIES["/api/v1/actions/remove-node/approvals"] = {"hosts": ["worker-2"], "reason": "r", "acknowledge_risks": True}
BODIES["/api/v1/approvals/{checkpoint_name}/reject"] = {"reason": "r"}
BODIES["/api/v1/approvals/{checkpoint_name}/revoke"] = {"approval_id": "0123456789ab", "reason": "r"}
VALUES = {"checkpoint_name": "ray-deployment", "node_name": "head", "run_id": "nope", "endpoint_id": "0123456789ab"}


def operations(client) -> list[tuple[str, str, str]]:
    """(method, path template, role it needs) of every operation the app serves but /healthz."""
    found = []
    for template, methods in client.get("/openapi.json").json()["paths"].items():
        for method in methods:
            if template != "/healthz":
                found.append((method.upper(), template, NEEDS.get((method.upper(), template), "viewer")))
    return found


def test_every_operation_is_401_without_a_token_403_below_its_role_and_served_at_it(loopback):
    from raydeploy.api.tokens import ROLES

    client = loopback(failed_auth_limit=100)  # 33 operations asked without a token: not a brute force
    served = operations(client)
    assert len(served) == 33
    held = client.store.acquire("20261130T000000Z-cli", "alice")  # so destroy answers 409 and starts nothing
    for method, template, role in served:
        path = template.format(**VALUES)
        body = BODIES.get(template)
        assert_error_shape(client.request(method, path, json=body), 401, "UNAUTHORIZED")
        weaker = ROLES[ROLES.index(role) - 1] if role != "viewer" else None
        if weaker:
            denied = client.request(method, path, json=body, headers=auth(client.issued[weaker]))
            assert_error_shape(denied, 403, "FORBIDDEN")
        allowed = client.request(method, path, json=body, headers=auth(client.issued[role]))
        assert allowed.status_code not in (401, 403), (method, path, allowed.text)
        assert "Traceback" not in allowed.text and (allowed.status_code < 500 or allowed.status_code == 503)
    client.store.release(held)
    assert (
        client.store.runs() == []
    )  # ray-deployment's predecessors never passed, destroy met the lock: nothing started


def test_diagnose_answers_a_finding_per_ray_node_and_names_a_host_that_does_not_answer(loopback):
    client = loopback()
    answer = client.get("/api/v1/cluster/diagnose", headers=auth(client.issued["viewer"]))
    assert answer.status_code == 200, answer.text
    findings = answer.json()
    assert [finding["host"] for finding in findings] == ["head"]
    assert findings[0]["joined"] is False and findings[0]["cause"] == "its host did not answer (SSH)"


def test_a_run_that_cannot_begin_is_a_503_naming_why_never_a_202_for_a_run_that_never_was(loopback):
    client = loopback()
    Path(client.inventory).write_text("head = [\n")  # the inventory breaks after the API started
    answer = client.post("/api/v1/checkpoints/prerequisites-check", headers=auth(client.issued["operator"]))
    body = assert_error_shape(answer, 503, "RUN_NOT_STARTED")
    assert "inventory" in body["message"] and "cannot be read" in body["message"], body
    assert client.store.runs() == [] and client.store.current_lock() is None


def test_an_actions_arguments_are_checked_before_anything_is_planned(api):
    viewer, approver = auth(api.issued["viewer"]), auth(api.issued["approver"])
    unknown = api.get("/api/v1/approvals/destroy", params={"with": "purge=true"}, headers=viewer)
    body = assert_error_shape(unknown, 400, "INVALID_REQUEST")
    assert body["message"] == "destroy takes no argument purge; its arguments are purge_data, forget_secrets"
    malformed = api.get("/api/v1/approvals/destroy", params={"with": "purge_data"}, headers=viewer)
    assert "is not KEY=VALUE" in assert_error_shape(malformed, 400, "INVALID_REQUEST")["message"]
    grant = {"reason": "CHG-1", "acknowledge_risks": True, "data": {"purge_data": "true"}}
    checkpoint = api.post("/api/v1/approvals/cleanup-existing", json=grant, headers=approver)
    assert "cleanup-existing takes no arguments" in assert_error_shape(checkpoint, 400, "INVALID_REQUEST")["message"]
    assert api.store.approvals() == []


def recorded_approval(
    store, approval_id: str, checkpoint: str = "cleanup-existing", approved_by: str = "carol"
) -> None:
    """An approval recorded as valid, as a grant records it."""
    store.insert_approval(
        {
            "id": approval_id,
            "checkpoint": checkpoint,
            "fingerprint": "fp",
            "plan_digest": "d" * 16,
            "plan_summary": "{}",
            "approved_by": approved_by,
            "reason": "CHG-1",
            "acknowledge_risks": 1,
            "created_at": "2026-11-30T00:00:00.000000Z",
            "expires_at": "2099-01-01T00:00:00.000000Z",
            "status": "valid",
            "source": "api",
        }
    )


def test_an_approver_revokes_one_valid_approval_of_its_checkpoint_and_it_is_audited(api):
    recorded_approval(api.store, "0123456789ab")
    approver = auth(api.issued["approver"])
    other = api.post(
        "/api/v1/approvals/docker-installation/revoke",
        json={"approval_id": "0123456789ab", "reason": "r"},
        headers=approver,
    )
    assert_error_shape(other, 404, "NOT_FOUND")  # not an approval of that checkpoint
    revoked = api.post(
        "/api/v1/approvals/cleanup-existing/revoke",
        json={"approval_id": "0123456789ab", "reason": "plan changed"},
        headers=approver,
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_by"] == "user-approver", revoked.text
    assert api.store.approval("0123456789ab")["status"] == "revoked"
    again = api.post(
        "/api/v1/approvals/cleanup-existing/revoke",
        json={"approval_id": "0123456789ab", "reason": "again"},
        headers=approver,
    )
    assert "only a valid one can be revoked" in assert_error_shape(again, 400, "INVALID_REQUEST")["message"]
    revocations = [e for e in api.store.audit.events() if e.event == "approval revoked"]
    assert [(e.actor, e.details["reason"]) for e in revocations] == [("user-approver", "plan changed")]


def test_runs_are_filtered_by_status_checkpoint_who_and_day(api):
    store = api.store
    store.start_run("20261129T100000Z-aaaaaa", "alice", "deploy", "inv", "fp", ["prerequisites-check"])
    store.finish_run("20261129T100000Z-aaaaaa", "succeeded")
    store.start_run("20261130T100000Z-bbbbbb", "bob", "deploy", "inv", "fp", ["cleanup-existing"])
    viewer = auth(api.issued["viewer"])

    def ids(**query) -> list[str]:
        answer = api.get("/api/v1/runs", params=query, headers=viewer)
        assert answer.status_code == 200, answer.text
        return [run["requested_by"] for run in answer.json()]

    assert ids() == ["bob", "alice"]
    assert ids(status="succeeded") == ["alice"] and ids(checkpoint="cleanup-existing") == ["bob"]
    assert ids(requested_by="alice") == ["alice"] and ids(requested_by="carol") == []
    today = store.run("20261130T100000Z-bbbbbb")["started_at"][:10]
    assert "bob" in ids(since=today) and ids(since="2999-01-01") == []
    assert_error_shape(api.get("/api/v1/runs", params={"since": "yesterday"}, headers=viewer), 400, "INVALID_REQUEST")


def test_a_run_shows_each_hosts_results_and_the_approvals_it_used(api):
    store = api.store
    store.start_run("run-9", "ops", "deploy", "inv", "fp", ["cleanup-existing"])
    store.start_checkpoint("run-9", "cleanup-existing")
    store.record_operations("run-9", "cleanup-existing", [("worker-1", "Remove ray_head", "changed", "")])
    recorded_approval(store, "a1b2c3d4e5f6")
    assert store.use_approval("a1b2c3d4e5f6", "run-9")
    run = api.get("/api/v1/runs/run-9", headers=auth(api.issued["viewer"])).json()
    assert [(o["host"], o["operation"], o["result"]) for o in run["operations"]] == [
        ("worker-1", "Remove ray_head", "changed")
    ]
    assert [(a["id"], a["approved_by"]) for a in run["approvals_used"]] == [("a1b2c3d4e5f6", "carol")]


def test_the_audit_is_searched_and_its_verification_names_an_edited_event(api):
    admin = auth(api.issued["admin"])
    found = api.get("/api/v1/audit", params={"q": "USER-VIEWER"}, headers=admin).json()
    assert [(e["event"], e["target"]) for e in found] == [("api token created", "user-viewer")]
    assert api.get("/api/v1/audit/verify", headers=admin).json() == {"intact": True, "events": 4, "problems": []}
    api.store.db.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
    verdict = api.get("/api/v1/audit/verify", headers=admin).json()
    assert verdict["intact"] is False and verdict["problems"], verdict
    assert api.get("/api/v1/audit/verify", headers=auth(api.issued["approver"])).status_code == 403


def test_prometheus_alerts_are_untrusted(tmp_path):
    """A loopback server answers /api/v1/alerts as a hostile or broken Prometheus could."""
    from raydeploy.api.monitoring import UpstreamError, alerts

    firing = {"labels": {"alertname": "RayNodeDown\x1b[31m", "severity": "critical", "node": "worker-2"},
              "annotations": {"summary": "worker-2 left"}, "state": "firing", "activeAt": "2026-11-30T10:00:00Z"}  # fmt: skip
    pending = {"labels": {"alertname": "HighLoad"}, "state": "pending"}
    with scripted_answers() as (base, answers):
        answers.append((200, json.dumps({"data": {"alerts": [pending, "junk", {"labels": 5}, firing]}}).encode()))
        assert alerts(base) == [
            {"name": "RayNodeDown?[31m", "state": "firing", "severity": "critical", "summary": "worker-2 left",
             "instance": "worker-2", "active_at": "2026-11-30T10:00:00Z"},
            {"name": "HighLoad", "state": "pending", "severity": "", "summary": "", "instance": "", "active_at": ""},
        ]  # fmt: skip
        answers.append((200, b'{"data": {"alerts": {}}}'))
        with pytest.raises(UpstreamError, match="no list of alerts"):
            alerts(base)
        answers.append((500, b""))
        with pytest.raises(UpstreamError, match="answered 500"):
            alerts(base)
