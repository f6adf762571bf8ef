"""The REST API served for real against the deployed lab."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from datetime import datetime

import pytest
import requests

from raydeploy.api.views import HEALTH_CACHE_S
from tests.conftest import BIN, REPO, api_server
from tests.lab.conftest import DeployedCluster


@contextlib.contextmanager
def serve(deployed: DeployedCluster, state_dir, roles: dict[str, str], *options: str):
    """`raydeploy api` on a free loopback port with a token per NAME: ROLE; yields (base URL, {name: headers})."""
    env = {**os.environ, **deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(state_dir)}
    headers = {}
    for name, role in roles.items():
        token = subprocess.run(
            [str(BIN / "raydeploy"), "api", "token", "create", "--name", name, "--role", role],
            cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        headers[name] = {"Authorization": f"Bearer {token}"}
    with api_server(list(options), env, state_dir / "api-server.log") as base:
        yield base, headers


@pytest.fixture
def served(deployed: DeployedCluster, tmp_path):
    """The API with a viewer token; yields (base URL, headers)."""
    with serve(deployed, tmp_path, {"viewer": "viewer"}) as (base, headers):
        yield base, headers["viewer"]


def test_cluster_health_is_healthy_with_every_node_and_says_how_fresh_it_is(deployed, served):
    deployed.wait_until_settled()
    base, headers = served
    health = requests.get(f"{base}/api/v1/cluster/health", headers=headers, timeout=30).json()
    assert health["overall_status"] == "HEALTHY", health
    assert health["ray_cluster"] == {"status": "HEALTHY", "nodes": 3, "expected_nodes": 3}
    assert health["monitoring"]["services"] == ["prometheus"]  # Grafana is off in the lab
    assert health["endpoints"] == {"healthy": 2, "total": 2}
    assert health["age_s"] == 0.0  # the first answer ran the checks; the cache is tests/unit/test_api.py's
    assert abs(datetime.fromisoformat(health["checked_at"]).timestamp() - time.time()) < 60, health["checked_at"]


def test_cluster_status_of_a_state_without_runs_has_no_checkpoint_completed(deployed, served):
    base, headers = served  # a fresh state directory: the lab was deployed with plain pyinfra, not through it
    status = requests.get(f"{base}/api/v1/cluster/status", headers=headers, timeout=30).json()
    assert status["total_checkpoints"] == 6 and status["completed_checkpoints"] == []
    assert {row["status"] for row in status["checkpoint_details"].values()} == {"NOT_FOUND"}
    # The seed's enum has no "not started": with nothing completed and nothing failed it says IN_PROGRESS.
    assert status["deployment_status"] == "IN_PROGRESS"
    assert status["last_updated"] == status["cluster_health"]["checked_at"]


def test_cluster_health_names_a_stopped_prometheus(deployed, served):
    deployed.wait_until_settled()
    base, headers = served
    head = deployed.lab.host("head")
    head.check_output("docker stop prometheus")
    try:
        time.sleep(HEALTH_CACHE_S + 0.5)  # past the cache
        health = requests.get(f"{base}/api/v1/cluster/health", headers=headers, timeout=30).json()
    finally:
        head.check_output("docker start prometheus")
    assert health["overall_status"] == "DEGRADED" and health["monitoring"]["status"] == "FAILED"
    assert health["ray_cluster"]["status"] == "HEALTHY"
    assert any(problem.startswith("prometheus:") for problem in health["problems"])
    deployed.wait_until_settled()


def test_nodes_are_the_inventorys_hosts_with_rays_view_and_their_facts(deployed, served):
    deployed.wait_until_settled()
    base, headers = served
    nodes = requests.get(f"{base}/api/v1/nodes", headers=headers, timeout=30).json()
    assert [(n["name"], n["role"], n["status"]) for n in nodes] == [
        ("head", "head", "ONLINE"),
        ("worker-1", "worker", "ONLINE"),
        ("worker-2", "worker", "ONLINE"),
    ]
    assert nodes[0]["ip"].startswith("10.213.") and "ray-head" in nodes[0]["containers"]
    worker = requests.get(f"{base}/api/v1/nodes/worker-1", headers=headers, timeout=60).json()
    assert worker["system_info"]["os"].startswith("Debian GNU/Linux 12"), worker
    assert int(worker["system_info"]["cpu_cores"]) >= 1
    assert "ray-worker" in {c["name"] for c in worker["containers"]}
    missing = requests.get(f"{base}/api/v1/nodes/worker-9", headers=headers, timeout=30)
    assert missing.status_code == 404 and missing.json()["details"]["valid"] == ["head", "worker-1", "worker-2"]


def follow(base: str, headers: dict, run_id: str, timeout_s: float = 600) -> tuple[list[str], dict]:
    """The run's log through its event stream, to the `end` event: (log lines, end event)."""
    lines, end = [], None
    with requests.get(f"{base}/api/v1/runs/{run_id}/log", headers=headers, stream=True, timeout=timeout_s) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        event = None
        for raw in stream.iter_lines(decode_unicode=True):
            if raw.startswith("event: "):
                event = raw[len("event: ") :]
            elif raw.startswith("data: ") and event == "log":
                lines.append(raw[len("data: ") :])
            elif raw.startswith("data: ") and event == "end":
                end = json.loads(raw[len("data: ") :])
                break
    assert end is not None, "the stream closed before its end event:\n" + "\n".join(lines[-20:])
    return lines, end


def execute(base: str, headers: dict, checkpoint: str, body: dict | None = None) -> requests.Response:
    return requests.post(f"{base}/api/v1/checkpoints/{checkpoint}", json=body or {}, headers=headers, timeout=120)


def test_ray_deployment_runs_through_the_api_with_a_live_log_and_the_cli_sees_it(deployed, tmp_path):
    deployed.wait_until_settled()
    with serve(deployed, tmp_path, {"ops": "operator", "watcher": "viewer"}) as (base, headers):
        refused = execute(base, headers["watcher"], "ray-deployment", {"force": True})
        assert refused.status_code == 403, refused.text
        started = execute(base, headers["ops"], "ray-deployment", {"force": True})
        assert started.status_code == 202, started.text
        run_id = started.json()["execution_id"]
        assert started.json()["status"] == "STARTED" and started.json()["log_url"] == f"/api/v1/runs/{run_id}/log"
        run = requests.get(f"{base}/api/v1/runs/{run_id}", headers=headers["watcher"], timeout=30).json()
        assert run["status"] == "running" and run["requested_by"] == "ops"
        second = execute(base, headers["ops"], "ray-deployment", {"force": True})
        assert second.status_code == 409 and second.json()["details"]["run_id"] == run_id, second.text
        cli = subprocess.run(
            [str(BIN / "raydeploy"), "deploy", "--only", "prerequisites-check"],
            cwd=REPO, env={**os.environ, **deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert cli.returncode == 1 and f"run {run_id} holds the lock" in cli.stderr, cli.stderr
        lines, end = follow(base, headers["watcher"], run_id)
        assert end == {"run_id": run_id, "status": "succeeded", "error": None}, lines[-20:]
        assert any("Ray head" in line for line in lines) and lines[-1].strip()
        health = requests.get(f"{base}/api/v1/cluster/health", headers=headers["watcher"], timeout=60).json()
        assert health["ray_cluster"] == {"status": "HEALTHY", "nodes": 3, "expected_nodes": 3}, health
        assert health["overall_status"] == "HEALTHY", health
        status = subprocess.run(
            [str(BIN / "raydeploy"), "status", "--json"],
            cwd=REPO, env={**os.environ, **deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path)},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        assert json.loads(status.stdout)["last_run"]["id"] == run_id  # the CLI sees the API's run
        audit = requests.get(f"{base}/api/v1/runs/{run_id}", headers=headers["watcher"], timeout=30).text
        said = "\n".join([*lines, audit, (tmp_path / "api-server.log").read_text(), status.stdout])
        said += "\n".join(str(row) for row in sqlite3.connect(tmp_path / "state.db").iterdump())
        tokens = [value["Authorization"].split()[1] for value in headers.values()]
        for secret in (deployed.token, deployed.redis_password, *tokens):
            assert secret not in said  # not in the log, the responses, the server's output or the state


def test_the_seeds_curl_lines_work_against_a_running_server_with_a_token(deployed, tmp_path):
    """original-readme.md's curl lines, as printed there, with only the Authorization header added."""
    deployed.wait_until_settled()
    with serve(deployed, tmp_path, {"admin": "approver"}) as (base, headers):
        token_header = f"Authorization: {headers['admin']['Authorization']}"
        port = base.rsplit(":", 1)[1]

        def curl(*args: str, port: str = port, token_header: str = token_header) -> dict:
            args = [arg.replace("localhost:8000", f"localhost:{port}") for arg in args]
            done = subprocess.run(
                ["curl", "-sS", "-H", token_header, *args], capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        first = execute(base, headers["admin"], "prerequisites-check")  # docker-installation comes after it
        assert first.status_code == 202, first.text
        assert follow(base, headers["admin"], first.json()["execution_id"])[1]["status"] == "succeeded"
        approval = curl(
            "-X", "POST", "http://localhost:8000/api/v1/approvals/cleanup-existing",
            "-H", "Content-Type: application/json",
            "-d", '{\n    "approved_by": "admin",\n    "reason": "Planned maintenance", \n    "acknowledge_risks": true\n  }',
        )  # fmt: skip
        assert approval["approved"] is True and approval["approved_by"] == "admin", approval
        assert len(approval["plan_digest"]) == 16 and approval["approval_token"]
        # Drift on worker-2, so docker-installation's plan changes something and needs an approval.
        worker = deployed.lab.host("worker-2")
        worker.check_output('sed -i \'s/"max-file": "[0-9]*"/"max-file": "9"/\' /etc/docker/daemon.json')
        unapproved = execute(base, headers["admin"], "docker-installation")
        assert unapproved.status_code == 400 and unapproved.json()["error"] == "APPROVAL_REQUIRED", unapproved.text
        impact = unapproved.json()["approval_info"]["impact_summary"]
        assert [line.split(":")[0] for line in impact] == ["worker-2"], impact
        execution = curl(
            "-X", "POST", "http://localhost:8000/api/v1/checkpoints/docker-installation",
            "-H", "Content-Type: application/json", "-d", '{"approve": true}',
        )  # fmt: skip
        assert execution["status"] == "STARTED", execution
        assert follow(base, headers["admin"], execution["execution_id"])[1]["status"] == "succeeded"
        assert '"max-file": "9"' not in worker.file("/etc/docker/daemon.json").content_string
        audit = subprocess.run(
            [str(BIN / "raydeploy"), "audit", "--json"],
            cwd=REPO, env={**os.environ, **deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path)},
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        granted = [e for e in json.loads(audit.stdout) if e["event"] == "approval granted"]
        assert [(e["target"], e["actor"], e["details"]["reason"]) for e in granted] == [
            ("cleanup-existing", "admin", "Planned maintenance"),
            ("docker-installation", "admin", "approve: true on execute"),
        ]
        deployed.wait_until_settled()  # docker restarted on worker-2: its Ray node rejoins
        status = curl("http://localhost:8000/api/v1/cluster/status")
        assert status["completed_checkpoints"] == ["prerequisites-check", "docker-installation"], status
        assert status["checkpoint_details"]["docker-installation"]["status"] == "PASSED"


def test_a_destructive_plan_needs_another_persons_approval_bound_to_it(deployed, tmp_path):
    deployed.wait_until_settled()
    deployed.lab.host("worker-1").check_output(
        "docker run -d --name ray_head --entrypoint sleep rayproject/ray:2.60.0-py311-cpu infinity"
    )
    try:
        with serve(deployed, tmp_path, {"ops": "operator", "carol": "approver", "dave": "approver"}) as (base, headers):

            def approve(who: str, body: dict, base: str = base, headers: dict = headers) -> requests.Response:
                return requests.post(
                    f"{base}/api/v1/approvals/cleanup-existing", json=body, headers=headers[who], timeout=120
                )

            needed = execute(base, headers["ops"], "cleanup-existing", {"force": True})
            assert needed.status_code == 400 and needed.json()["error"] == "APPROVAL_REQUIRED", needed.text
            info = needed.json()["approval_info"]
            assert info["destructive_operation"] and info["separation_of_duties"]
            assert any(line.startswith("worker-1: 1 change(s)") for line in info["impact_summary"]), info
            assert approve("carol", {"reason": "CHG-7"}).json()["error"] == "APPROVAL_REFUSED"  # risks unacknowledged
            granted = approve("carol", {"reason": "CHG-7", "acknowledge_risks": True}).json()
            assert granted["plan_digest"] == info["plan_digest"] and granted["approved_by"] == "carol"
            own = execute(base, headers["carol"], "cleanup-existing", {"force": True})
            assert own.status_code == 400 and "separation of duties" in own.json()["message"], own.text
            rejected = requests.post(
                f"{base}/api/v1/approvals/cleanup-existing/reject",
                json={"reason": "not today"}, headers=headers["dave"], timeout=120,
            )  # fmt: skip
            assert rejected.status_code == 200 and rejected.json()["plan_digest"] == info["plan_digest"]
            assert execute(base, headers["ops"], "cleanup-existing", {"force": True}).status_code == 400
            assert approve("dave", {"reason": "CHG-8", "acknowledge_risks": True}).status_code == 200
            started = execute(base, headers["ops"], "cleanup-existing", {"force": True})
            assert started.status_code == 202, started.text
            assert follow(base, headers["ops"], started.json()["execution_id"])[1]["status"] == "succeeded"
            names = deployed.lab.host("worker-1").check_output("docker ps -a --format '{{.Names}}'")
            assert "ray_head" not in names.split()
            audit = subprocess.run(
                [str(BIN / "raydeploy"), "audit", "--json"],
                cwd=REPO, env={**os.environ, **deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path)},
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
            used = [e for e in json.loads(audit.stdout) if e["event"] == "approval used"]
            assert [(e["actor"], e["details"]["approved_by"]) for e in used] == [("ops", "dave")]
    finally:
        deployed.lab.host("worker-1").run("docker rm -f ray_head")


SEED_DOCUMENT = REPO.parent / "shared" / "seed" / "rest-api-spec.yaml"
OUR_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
# The seed documents few statuses (no 401, 403, 422, 429): its document is held to its schemas and to no 5xx.
SEED_CHECKS = "not_a_server_error,response_schema_conformance"


def schemathesis(document: str, base: str, headers: dict, checks: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(BIN / "st"), "run", document, "--url", base,
            "-H", f"Authorization: {headers['Authorization']}",
            "--checks", checks,
            "--max-examples", "10", "--request-timeout", "120", "--generation-deterministic",
        ],
        cwd=cwd, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


def test_schemathesis_finds_no_server_error_and_every_response_conforms(deployed, tmp_path):
    """Generated requests from the served OpenAPI document and from the seed's own (with the bearer
    header), on the deployed lab: no 5xx, every response as ours says, none that breaks the seed's
    schema. The test holds the state's lock, so execute requests answer 409 and start nothing."""
    from raydeploy.state import StateStore

    deployed.wait_until_settled()
    with serve(deployed, tmp_path, {"fuzzer": "admin"}, "--rate-limit", "1000000") as (base, headers):
        store = StateStore(tmp_path)
        lock = store.acquire("schemathesis-holds-the-lock", "test")
        try:
            ours = schemathesis(f"{base}/openapi.json", base, headers["fuzzer"], OUR_CHECKS, tmp_path)
            seed = schemathesis(str(SEED_DOCUMENT), base, headers["fuzzer"], SEED_CHECKS, tmp_path)
        finally:
            store.release(lock)
    for done in (ours, seed):
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert " passed" in done.stdout and "failure" not in done.stdout.split("SUMMARY")[-1], done.stdout[-3000:]
