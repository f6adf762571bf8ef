"""The REST API served for real against the deployed lab."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import requests

from tests.conftest import BIN, REPO
from tests.lab.conftest import DeployedCluster


@pytest.fixture
def served(deployed: DeployedCluster, tmp_path):
    """`raydeploy api` on a free loopback port with a viewer token; yields (base URL, headers)."""
    env = {**os.environ, **deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path / "state")}
    token = subprocess.run(
        [str(BIN / "raydeploy"), "api", "token", "create", "--name", "viewer", "--role", "viewer"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(BIN / "raydeploy"), "api", "--port", str(port)], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield base, {"Authorization": f"Bearer {token}"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_cluster_health_is_healthy_with_every_node_and_says_how_fresh_it_is(deployed, served):
    deployed.wait_until_settled()
    base, headers = served
    health = requests.get(f"{base}/api/v1/cluster/health", headers=headers, timeout=30).json()
    assert health["overall_status"] == "HEALTHY", health
    assert health["ray_cluster"] == {"status": "HEALTHY", "nodes": 3, "expected_nodes": 3}
    assert health["monitoring"]["services"] == ["prometheus"]  # Grafana is off in the lab
    assert health["endpoints"] == {"healthy": 2, "total": 2}
    assert health["age_s"] == 0.0
    again = requests.get(f"{base}/api/v1/cluster/health", headers=headers, timeout=30).json()
    assert again["checked_at"] == health["checked_at"] and again["age_s"] > 0  # served from the 5 s cache
    status = requests.get(f"{base}/api/v1/cluster/status", headers=headers, timeout=30).json()
    assert status["total_checkpoints"] == 6 and status["cluster_health"]["overall_status"] == "HEALTHY"
    assert status["deployment_status"] in ("COMPLETED", "IN_PROGRESS", "FAILED")


def test_cluster_health_names_a_stopped_prometheus(deployed, served):
    deployed.wait_until_settled()
    base, headers = served
    head = deployed.lab.host("head")
    head.check_output("docker stop prometheus")
    try:
        time.sleep(5.5)  # past the cache
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
