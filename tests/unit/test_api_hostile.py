"""The REST API under a hostile client, without hosts (issue 14): failed authentication throttled and
audited per burst, oversized requests refused before anything reads them, the seed's statuses and
fields to the letter, and the headers the RFCs ask for. The flood and schemathesis tests serve the API
for real on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import requests
from click.testing import CliRunner
from fastapi.testclient import TestClient

from raydeploy.api.app import CONSOLE, PUBLIC_PATHS, ROUTERS, create_app
from raydeploy.api.failed_auth import MAX_HEADER_CHARS, MAX_PATH_CHARS, FailedAuth
from raydeploy.api.tokens import TokenStore
from raydeploy.state import StateStore
from tests.conftest import BIN, REPO, api_server
from tests.unit.test_api import LOOPBACK_INVENTORY, assert_error_shape, auth, free_port

SEED = REPO.parent / "shared" / "seed" / "rest-api-spec.yaml"  # the seed's own API document


def make_client(tmp_path: Path, inventory: str = "inventories/lab.py", **options) -> TestClient:
    app = create_app(inventory, tmp_path / "state", **options)
    client = TestClient(app, raise_server_exceptions=False)
    client.token = TokenStore(app.state.store).create("ops", "admin", "test")[1]
    client.store = app.state.store
    return client


def failures(store: StateStore) -> list:
    return [event for event in store.audit.events() if event.event == "api authentication failed"]


def from_address(app, address: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """GET PATH as a client at ADDRESS (TestClient is always 'testclient')."""

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path, headers=headers or {})

    return asyncio.run(get())


# Defect 6: the headers the RFCs ask for --------------------------------------------------------------


def test_a_401_carries_a_bearer_challenge(tmp_path):
    client = make_client(tmp_path)
    missing = client.get("/api/v1/runs")
    assert_error_shape(missing, 401, "UNAUTHORIZED")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="raydeploy"'
    forged = client.get("/api/v1/runs", headers=auth("rdt_forged"))
    assert forged.headers["WWW-Authenticate"] == 'Bearer realm="raydeploy", error="invalid_token"'


def test_a_405_names_the_methods_allowed(tmp_path):
    client = make_client(tmp_path)
    answer = client.post("/api/v1/runs", headers=auth(client.token))
    assert_error_shape(answer, 405, "METHOD_NOT_ALLOWED")
    assert answer.headers["Allow"] == "GET"


# Defect 5: a malformed body is 422; execute's 400 is APPROVAL_REQUIRED only ------------------------------


@pytest.mark.parametrize(
    "body", [b"{not json", b"\xc3\x28", b'{"force": "maybe"}', b'{"force": true, "status": "COMPLETED"}', b"[1, 2]"]
)
def test_a_malformed_body_is_422_never_the_seeds_400(tmp_path, body):
    client = make_client(tmp_path)
    headers = {**auth(client.token), "Content-Type": "application/json"}
    answer = client.post("/api/v1/checkpoints/prerequisites-check", content=body, headers=headers)
    assert_error_shape(answer, 422, "INVALID_REQUEST")
    assert client.store.runs() == [] and client.store.current_lock() is None


def test_the_document_says_execute_answers_400_only_for_a_missing_approval(tmp_path):
    document = make_client(tmp_path).get("/openapi.json").json()
    execute = document["paths"]["/api/v1/checkpoints/{checkpoint_name}"]["post"]["responses"]
    assert execute["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApprovalRequired")
    required = document["components"]["schemas"]["ApprovalRequired"]
    assert required["properties"]["error"] == {"const": "APPROVAL_REQUIRED", "title": "Error", "type": "string"}
    assert execute["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_a_bad_query_or_header_value_is_still_a_400(tmp_path):
    client = make_client(tmp_path)
    for bad in ("abc", "0", "10000", "1" * 3000):
        answer = client.get("/api/v1/runs", params={"limit": bad}, headers=auth(client.token))
        assert_error_shape(answer, 400, "INVALID_REQUEST")
    answer = client.get("/api/v1/audit", params={"limit": "-1"}, headers=auth(client.token))
    assert_error_shape(answer, 400, "INVALID_REQUEST")


# Defect 4: strings where the seed says string ---------------------------------------------------------


def test_cluster_status_on_a_fresh_state_answers_last_updated_as_a_string(tmp_path):
    client = make_client(tmp_path)
    status = client.get("/api/v1/cluster/status", headers=auth(client.token)).json()
    assert isinstance(status["last_updated"], str) and status["last_updated"].endswith("Z")
    assert status["last_updated"] == status["cluster_health"]["checked_at"]
    for name, detail in status["checkpoint_details"].items():
        assert detail["nodes"] == {} and detail["status"] == "NOT_FOUND", name


def test_a_node_whose_facts_cannot_be_read_is_a_503_naming_it(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text(LOOPBACK_INVENTORY.format(port=free_port(), grafana=False))
    client = make_client(tmp_path, str(inventory))
    answer = client.get("/api/v1/nodes/head", headers=auth(client.token))
    body = assert_error_shape(answer, 503, "NODE_UNREACHABLE")
    assert body["details"] == {"node": "head"} and "head" in body["message"]
    assert "Connection refused" in body["message"] and "CommandResult" not in body["message"], body["message"]


def test_a_nodes_checkpoints_carry_no_nulls(tmp_path):
    client = make_client(tmp_path)
    store = client.store
    store.start_run("run-1", "alice", "raydeploy deploy", "inv.py", "fp", ["final-validation"])
    store.start_checkpoint("run-1", "final-validation")
    store.record_validation("run-1", "final-validation", [("cluster", "ray job", "fail", "x")])
    store.finish_checkpoint("run-1", "final-validation", "failed", 0, ["head"], "head: failed")
    status = client.get("/api/v1/checkpoints/final-validation", headers=auth(client.token)).json()
    assert status["nodes"] == {
        "head": {
            "status": "FAILED",
            "timestamp": status["nodes"]["head"]["timestamp"],
            "approval_required": False,
            "destructive_operation": False,
        }
    }
    assert isinstance(status["nodes"]["head"]["timestamp"], str)


def test_the_node_list_holds_only_the_seeds_roles_and_a_monitoring_host_has_its_details(tmp_path):
    inventory = tmp_path / "inventory.py"
    monitoring = {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": free_port(),
        "ssh_user": "root",
        "cluster_address": "127.0.0.2",
    }
    inventory.write_text(
        LOOPBACK_INVENTORY.format(port=free_port(), grafana=False) + f"monitoring = [('mon', {monitoring!r})]\n"
    )
    client = make_client(tmp_path, str(inventory))
    listed = client.get("/api/v1/nodes", headers=auth(client.token))
    assert [(node["name"], node["role"]) for node in listed.json()] == [("head", "head")], listed.text
    missing = assert_error_shape(client.get("/api/v1/nodes/nope", headers=auth(client.token)), 404, "NOT_FOUND")
    assert missing["details"]["valid"] == ["head", "mon"]


# Defect 7: what answers without a token ------------------------------------------------------------


def test_only_healthz_and_the_apis_own_documents_answer_without_a_token(tmp_path):
    client = make_client(tmp_path, failed_auth_limit=100)  # 24 operations asked without a token: no brute force
    own = {route.path for route in client.app.routes if getattr(route, "path", None)}
    assert own == {*PUBLIC_PATHS, "/static"}  # every other route comes from a router of ROUTERS or the console's
    console = [(method, route.path) for router in CONSOLE for route in router.routes for method in route.methods]
    for method, path in console:  # without a session: sign-in, or nothing but a 401 page (the console's own tests)
        answer = client.request(method, path.format(name="worker-1", run_id="nope"), follow_redirects=False)
        if path.startswith("/signin"):
            continue  # signing in is what answers without a session
        assert (answer.status_code, answer.headers.get("location", "/signin")) in (
            (303, f"/signin?next={path.format(name='worker-1', run_id='nope')}"),
            (401, "/signin"),
        ), (method, path, answer.status_code)
    for path in PUBLIC_PATHS:
        assert client.get(path).status_code == 200, path
    values = {"checkpoint_name": "ray-deployment", "node_name": "head", "run_id": "nope", "endpoint_id": "0123456789ab"}
    served = [(method, route.path) for router in ROUTERS for route in router.routes for method in route.methods]
    assert len(served) == 33  # the seed contract's 17, destroy and its plan, diagnose, remove-node's run, plan and
    # approval, rollback's plan and run, approval revoke, audit verification, Prometheus' alerts, webhooks' 5
    for method, path in served:
        assert_error_shape(client.request(method, path.format(**values)), 401, "UNAUTHORIZED")
    document = client.get("/openapi.json").json()  # and the document says which need the bearer scheme
    for path, methods in document["paths"].items():
        for operation in methods.values():
            assert (operation.get("security") == [{"HTTPBearer": []}]) == path.startswith("/api/v1/"), path


def test_readme_help_and_app_say_the_same_about_what_is_public():
    from raydeploy.api.cli import api

    said = "/healthz and the API's own documents (/openapi.json, /docs, /redoc) need none"
    help_text = " ".join(CliRunner().invoke(api, ["--help"]).output.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    description = create_app("inventories/lab.py", Path("/nonexistent-never-created")).description
    assert said in help_text and said in readme and said in " ".join(description.split())


# Defect 2: failed authentication is throttled, audited per burst, and requests are capped ----------------


def test_failed_authentication_is_throttled_per_client_address_and_a_valid_token_still_works(tmp_path):
    client = make_client(tmp_path, failed_auth_limit=3)
    answers = [client.get("/api/v1/runs", headers=auth("rdt_forged")) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]
    body = assert_error_shape(answers[-1], 429, "RATE_LIMITED")
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60 and body["details"]["retry_after_s"] >= 1
    assert client.get("/api/v1/runs", headers=auth(client.token)).status_code == 200
    assert from_address(client.app, "192.0.2.7", "/api/v1/runs").status_code == 401  # another address


def test_a_burst_of_failures_is_one_event_at_once_and_one_with_its_count(tmp_path):
    client = make_client(tmp_path, failed_auth_limit=5)
    for _ in range(40):
        client.get("/api/v1/runs", headers=auth("rdt_forged"))
    opened = failures(client.store)
    assert len(opened) == 1 and opened[0].details["count"] == 1 and opened[0].details["client"] == "testclient"
    client.app.state.service.failed_auth.flush(client.store, everything=True)
    recorded = failures(client.store)
    assert len(recorded) == 2 and sum(event.details["count"] for event in recorded) == 40
    assert recorded[1].details["throttled"] == 35 and recorded[1].details["reason"] == "unknown or revoked token"
    assert client.store.audit.verify() == []


def test_a_burst_is_recorded_once_its_window_has_passed(tmp_path):
    now = [1000.0]
    throttle = FailedAuth(limit=100, window_s=60, clock=lambda: now[0])
    store = StateStore(tmp_path / "state")
    for _ in range(10):
        throttle.failed(store, "198.51.100.1", "no token", "/api/v1/runs", "curl/8")
    assert throttle.flush(store) == 0 and len(failures(store)) == 1
    now[0] += 61
    assert throttle.flush(store) == 1
    assert [event.details["count"] for event in failures(store)] == [1, 9]
    throttle.failed(store, "198.51.100.1", "no token", "/api/v1/runs", "curl/8")  # a new window opens
    assert [event.details["count"] for event in failures(store)] == [1, 9, 1]


def test_failures_from_many_addresses_are_bounded_under_other(tmp_path):
    store = StateStore(tmp_path / "state")
    throttle = FailedAuth(limit=100)
    for number in range(250):
        throttle.failed(store, f"10.9.{number // 250}.{number % 250}", "no token", "/api/v1/runs", None)
    throttle.flush(store, everything=True)
    events = failures(store)
    assert len(events) <= 102 and sum(event.details["count"] for event in events) == 250
    assert {event.details["client"] for event in events} >= {"(other)"}


def test_an_audit_event_keeps_a_capped_clean_path_and_user_agent(tmp_path):
    client = make_client(tmp_path)
    path = "/api/v1/runs/" + "a" * 3000
    client.get(path, headers={"User-Agent": "x\x1b[31m" + "y" * 5000, **auth("rdt_forged")})
    (event,) = failures(client.store)
    assert len(event.target) <= MAX_PATH_CHARS and event.target.startswith("/api/v1/runs/aaa")
    assert len(event.details["user_agent"]) <= MAX_HEADER_CHARS and "\x1b" not in event.details["user_agent"]
    viewer = TokenStore(client.store).create("watcher", "viewer", "test")[1]
    client.post("/api/v1/checkpoints/" + "b" * 3000, headers=auth(viewer))
    refused = [event for event in client.store.audit.events() if event.event == "api authorisation refused"]
    assert len(refused) == 1 and len(refused[0].target) <= MAX_PATH_CHARS


def test_an_oversized_request_line_or_header_section_is_refused_before_anything_reads_it(tmp_path):
    client = make_client(tmp_path)
    long_path = client.get("/api/v1/runs/" + "a" * 20_000, headers=auth("rdt_forged"))
    assert_error_shape(long_path, 414, "URI_TOO_LONG")
    long_query = client.get("/api/v1/runs", params={"limit": "1" * 5000}, headers=auth(client.token))
    assert_error_shape(long_query, 414, "URI_TOO_LONG")
    many = {f"X-Filler-{number}": "1" for number in range(80)}
    assert_error_shape(client.get("/healthz", headers=many), 431, "HEADERS_TOO_LARGE")
    assert_error_shape(client.get("/healthz", headers={"X-Big": "z" * 9000}), 431, "HEADERS_TOO_LARGE")
    assert failures(client.store) == []


# For real, on loopback: the server's own limits, a flood, schemathesis --------------------------------


@contextlib.contextmanager
def serve(tmp_path: Path, *options: str):
    """`raydeploy api` on a free loopback port over a loopback inventory whose only host refuses
    everything; yields (base URL, admin headers, state directory)."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(LOOPBACK_INVENTORY.format(port=free_port(), grafana=False))
    state = tmp_path / "state"
    env = {**os.environ, "RAYDEPLOY_STATE_DIR": str(state)}
    command = [str(BIN / "raydeploy"), "api", "-i", str(inventory)]
    token = subprocess.run(
        [*command, "token", "create", "--name", "fuzzer", "--role", "admin"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    with api_server([*command[2:], *options], env, tmp_path / "api-server.log") as base:
        yield base, auth(token), state


def state_bytes(state: Path) -> int:
    return sum(path.stat().st_size for path in state.glob("state.db*"))


def trickled(base: str, head: bytes) -> bytes:
    """What the server answers to a request head sent 2 KiB at a time (so it never arrives whole)."""
    import socket

    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        try:
            for start in range(0, len(head), 2048):
                connection.sendall(head[start : start + 2048])
                time.sleep(0.02)
        except OSError:
            pass  # the server refused and closed mid-way
        return connection.recv(200)


def test_the_server_refuses_a_head_over_its_cap_even_when_it_arrives_in_pieces(tmp_path):
    """15,000 bytes of headers: under h11's default (16 KiB), over what `raydeploy api` sets (13 KiB)."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: " + b"f" * 15_000 + b"\r\n\r\n"
    with serve(tmp_path) as (base, _headers, _state):
        answer = trickled(base, head)
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_a_flood_without_a_token_is_throttled_and_the_state_stays_small(tmp_path):
    """300 bad-token requests with 3,000-character paths, then 50 with 100,000-character paths, on loopback."""
    with serve(tmp_path) as (base, headers, state):
        before = state_bytes(state)
        session = requests.Session()
        started = time.monotonic()
        statuses = [
            session.get(f"{base}/api/v1/runs/{'x' * 3000}", headers=auth("rdt_forged"), timeout=10).status_code
            for _ in range(300)
        ]
        flood_s = time.monotonic() - started
        huge = []
        for _ in range(50):
            try:
                huge.append(requests.get(f"{base}/api/v1/runs/{'y' * 100_000}", timeout=10).status_code)
            except requests.ConnectionError:
                huge.append(0)  # the server closed the connection on an oversized head: refused too
        grown = state_bytes(state) - before
        assert requests.get(f"{base}/api/v1/runs", headers=headers, timeout=10).status_code == 200
    recorded = failures(StateStore(state))  # the server has stopped: its open bursts are recorded
    print(f"flood: {len(statuses)} in {flood_s:.2f} s, {statuses.count(429)} x 429, {sorted(set(huge))}, +{grown} B")
    assert statuses[:20] == [401] * 20 and statuses.count(429) == 280
    assert set(huge) <= {400, 414, 431, 0} and 200 not in huge
    assert grown < 256 * 1024, grown
    assert len(recorded) == 2 and sum(event.details["count"] for event in recorded) == 300
    assert all(len(event.target) <= MAX_PATH_CHARS for event in recorded)


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# These plan over SSH or read a host or Prometheus: with no hosts they answer 503 (the lab test runs them).
# Webhooks post to whatever URL they are given (generated ones could be anywhere, with allow_private on):
# tests/unit/test_webhooks_api.py tests them against a receiver on loopback.
NEEDS_HOSTS = (
    r"^/api/v1/(plan/|approvals/|actions/(remove-node/|destroy/plan)|nodes/\{|monitoring/(prometheus|alerts)"
    r"|cluster/diagnose"
    r"|webhooks)"
)


def schemathesis(document: str, base: str, headers: dict, checks: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(BIN / "st"), "run", document, "--url", base,
            "-H", f"Authorization: {headers['Authorization']}",
            "--checks", checks, "--exclude-path-regex", NEEDS_HOSTS,
            "--max-examples", "15", "--generation-deterministic", "--request-timeout", "30",
        ],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_schemathesis_finds_no_server_error_against_ours_or_the_seeds_document(tmp_path):
    """Generated requests from our document and from the seed's own (with the bearer header): no 5xx,
    every response as our document says, and no response that breaks the seed's schema. The test holds
    the state's lock, so execute answers 409 and starts nothing."""
    with serve(tmp_path, "--rate-limit", "1000000") as (base, headers, state):
        store = StateStore(state)
        lock = store.acquire("schemathesis-holds-the-lock", "test")
        try:
            ours = schemathesis(f"{base}/openapi.json", base, headers, CHECKS, tmp_path)
            seed = schemathesis(str(SEED), base, headers, "not_a_server_error,response_schema_conformance", tmp_path)
        finally:
            store.release(lock)
    for done, operations in (
        (ours, 17),
        (seed, 7),
    ):  # ours: 12 of the seed's, destroy, remove-node, rollback and its plan, the audit's verification
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        summary = done.stdout.split("SUMMARY")[-1]
        print(summary)
        tested = re.search(r"Tested: (\d+)", summary)
        assert tested and int(tested.group(1)) == operations, summary


def test_a_token_holds_a_bounded_number_of_open_log_streams(tmp_path):
    from raydeploy.api.context import MAX_STREAMS_PER_TOKEN
    from raydeploy.api.errors import ApiError

    service = make_client(tmp_path).app.state.service

    async def events():
        yield "event"

    held = [service.counted_stream("token-a", events()) for _ in range(MAX_STREAMS_PER_TOKEN)]
    with pytest.raises(ApiError) as refused:
        service.counted_stream("token-a", events())
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "15"
    service.counted_stream("token-b", events())  # per token
    asyncio.run(held.pop().aclose())  # a stream that ended frees its place
    held.append(service.counted_stream("token-a", events()))
    held.clear()  # and so do dropped ones
    assert len([service.counted_stream("token-a", events()) for _ in range(MAX_STREAMS_PER_TOKEN)]) == 8


def test_a_ninth_open_log_stream_of_one_token_is_refused_on_a_real_server(tmp_path):
    with serve(tmp_path) as (base, headers, state):
        store = StateStore(state)
        lock = store.acquire("run-long", "alice")
        store.start_run("run-long", "alice", "raydeploy deploy", "inv", "fp", ["ray-deployment"])
        opened = []
        try:
            for _ in range(8):
                opened.append(
                    requests.get(f"{base}/api/v1/runs/run-long/log", headers=headers, stream=True, timeout=10)
                )
            assert [stream.status_code for stream in opened] == [200] * 8
            ninth = requests.get(f"{base}/api/v1/runs/run-long/log", headers=headers, timeout=10)
            assert_error_shape(ninth, 429, "TOO_MANY_STREAMS")
            opened.pop().close()
            deadline = time.monotonic() + 10  # the server notices the closed stream at its next poll
            while time.monotonic() < deadline:
                again = requests.get(f"{base}/api/v1/runs/run-long/log", headers=headers, stream=True, timeout=10)
                if again.status_code == 200:
                    break
                time.sleep(0.5)
            opened.append(again)
            assert again.status_code == 200
        finally:
            for stream in opened:
                stream.close()
            store.release(lock)
