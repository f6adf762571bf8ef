"""destroy on a lab of its own: approval, what goes and what stays, unreachable hosts, deploy brings it back,
and the same through the API (an operator requests, another person approves)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.lab.conftest import DeployedCluster, TestLab, deploy, grand_total
from tests.lab.test_api import follow, serve
from tests.lab.test_wrapper import RAY_IMAGE, raydeploy_runner

HOSTS = ("head", "worker-1", "worker-2")


@pytest.fixture(scope="module")
def doomed(make_lab) -> Iterator[TestLab]:
    """A deployed 1+2 lab that these tests tear down (never the shared `deployed` one)."""
    lab = make_lab("destroy")
    lab.up("--workers", "2")
    result = deploy(lab)
    assert grand_total(result.output)[1] == 0, result.output
    yield lab
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def containers(lab: TestLab, host: str) -> set[str]:
    return set(lab.host(host).check_output("docker ps -a --format '{{.Names}}'").split())


def volumes(lab: TestLab, host: str) -> set[str]:
    return set(lab.host(host).check_output("docker volume ls --format '{{.Name}}'").split())


def secrets_dir(lab: TestLab) -> Path:
    """Where the deploys keep the lab cluster's generated secrets on this machine (its state_dir)."""
    return lab.home / lab.name / "secrets"


def test_destroy_removes_only_what_raydeploy_made_after_approval_and_deploy_brings_it_back(doomed, tmp_path):
    wrapper = raydeploy_runner({**doomed.env, "RAYDEPLOY_STATE_DIR": str(tmp_path / "state")})
    doomed.host("worker-1").check_output(f"docker run -d --name not-ours --entrypoint sleep {RAY_IMAGE} infinity")
    doomed.host("head").check_output("touch /etc/raydeploy/operator-notes")

    stopped = wrapper("destroy")
    assert stopped.returncode == 3, stopped.output
    assert "raydeploy approve destroy -i inventories/lab.py" in stopped.output
    assert {"ray-head", "ray-redis"} <= containers(doomed, "head"), "destroy changed a host unapproved"
    wrapper("approve", "destroy", "--by", "bob", "--reason", "EOL", "--acknowledge-risks", check=True)
    done = wrapper("destroy")
    assert done.returncode == 0, done.output

    for host in HOSTS:
        assert not any(
            name.startswith(("ray-", "redis", "node-exporter", "prometheus")) for name in containers(doomed, host)
        )
        assert doomed.host(host).service("docker").is_running  # Docker stays
    assert "not-ours" in containers(doomed, "worker-1")
    head = doomed.host("head")
    assert {"raydeploy-redis-data", "raydeploy-prometheus-data"} <= volumes(doomed, "head")  # data kept
    assert not head.file("/etc/raydeploy/redis.conf").exists and not head.file("/etc/raydeploy/prometheus").exists
    assert head.file("/etc/raydeploy/operator-notes").exists  # not raydeploy's: kept, and its directory
    assert (secrets_dir(doomed) / "ray-auth-token").is_file(), "without --forget-secrets the secrets stay"

    wrapper(
        "approve",
        "destroy",
        "--by",
        "bob",
        "--reason",
        "EOL",
        "--acknowledge-risks",
        "--with",
        "purge_data=true",
        check=True,
    )
    purged = wrapper("destroy", "--purge-data")
    assert purged.returncode == 0, purged.output
    assert not {"raydeploy-redis-data", "raydeploy-prometheus-data"} & volumes(doomed, "head")
    again = wrapper("plan", "destroy", "--with", "purge_data=true")
    assert again.returncode == 0, again.output  # exit 0: no changes, nothing of raydeploy's is left

    back = wrapper("deploy", "--auto-approve")
    assert back.returncode == 0, back.output
    assert {"ray-head", "ray-redis"} <= containers(doomed, "head") and "ray-worker" in containers(doomed, "worker-2")


def test_an_unreachable_host_is_named_the_others_are_torn_down_and_a_rerun_finishes(doomed, tmp_path):
    wrapper = raydeploy_runner({**doomed.env, "RAYDEPLOY_STATE_DIR": str(tmp_path / "state")})
    assert "ray-worker" in containers(doomed, "worker-2")
    worker_2 = doomed.state().host("worker-2").container

    subprocess.run(["docker", "stop", worker_2], check=True, capture_output=True)
    try:
        partial = wrapper("destroy", "--auto-approve", "--forget-secrets")
        assert partial.returncode == 1, partial.output
        assert "worker-2" in partial.output
        assert "resume: raydeploy destroy -i inventories/lab.py --forget-secrets" in partial.output
        assert f"the secrets in {secrets_dir(doomed)} are kept" in partial.output
        assert (secrets_dir(doomed) / "ray-auth-token").is_file(), "a partial destroy forgot the secrets"
        assert "ray-head" not in containers(doomed, "head") and "ray-worker" not in containers(doomed, "worker-1")
    finally:
        subprocess.run(["docker", "start", worker_2], check=True, capture_output=True)
        doomed.up("--workers", "2")  # waits until the restarted host has booted; its SSH port is kept
    finished = wrapper("destroy", "--auto-approve", "--forget-secrets")
    assert finished.returncode == 0, finished.output
    assert "ray-worker" not in containers(doomed, "worker-2")
    assert not secrets_dir(doomed).exists(), finished.output


def test_the_api_destroys_at_an_operators_request_with_another_persons_approval(doomed, tmp_path):
    state = tmp_path / "state"
    wrapper = raydeploy_runner({**doomed.env, "RAYDEPLOY_STATE_DIR": str(state)})
    wrapper("deploy", "--auto-approve", check=True)
    roles = {"ops": "operator", "carol": "approver"}
    with serve(DeployedCluster(doomed), state, roles, "--separation-of-duties") as (base, headers):

        def call(method: str, who: str, path: str, **kwargs) -> requests.Response:
            return requests.request(method, f"{base}/api/v1{path}", headers=headers[who], timeout=300, **kwargs)

        requested = call("POST", "ops", "/actions/destroy", json={"purge_data": True})
        assert requested.status_code == 202, requested.text
        lines, end = follow(base, headers["ops"], requested.json()["execution_id"])
        assert end["status"] == "awaiting-approval", (end, lines[-20:])
        assert {"ray-head", "ray-redis"} <= containers(doomed, "head"), "destroy changed a host unapproved"

        shown = call("GET", "carol", "/approvals/destroy", params={"with": "purge_data=true"})
        assert shown.status_code == 200 and shown.json()["approval_required"], shown.text
        digest = shown.json()["plan_digest"]
        grant = {"reason": "EOL", "acknowledge_risks": True, "data": {"purge_data": "true"}}
        assert call("POST", "ops", "/approvals/destroy", json=grant).status_code == 403  # an operator cannot
        granted = call("POST", "carol", "/approvals/destroy", json=grant)
        assert granted.status_code == 200 and granted.json()["plan_digest"] == digest, granted.text

        started = call("POST", "ops", "/actions/destroy", json={"purge_data": True})
        assert started.status_code == 202, started.text
        lines, end = follow(base, headers["ops"], started.json()["execution_id"])
        assert end["status"] == "succeeded", (end, lines[-30:])
        assert any("approved by carol (EOL)" in line for line in lines), lines[-30:]
    for host in HOSTS:
        assert not any(name.startswith(("ray-", "node-exporter", "prometheus")) for name in containers(doomed, host))
    assert not {"raydeploy-redis-data", "raydeploy-prometheus-data"} & volumes(doomed, "head")
