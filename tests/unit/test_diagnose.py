"""Each way a Ray node stays out of the cluster gets its own cause and fix (no hosts: recorded evidence)."""

from __future__ import annotations

import pytest

from raydeploy.diagnose import Finding, diagnose_node, ray_nodes
from tests.clusters import make_cluster

HEAD = {"ray": "2.60.0", "python": "3.11.2"}


def healthy(**changes) -> dict:
    evidence = {
        "container": {"exists": True, "running": True, "status": "running", "exit_code": 0, "restart_count": 0},
        "raylet": True,
        "raylet_errors": ["[2026-11-30 09:53:39,302 E 44 54] (raylet) node_manager.cc:1: failed to register"],
        "ray": "2.60.0",
        "python": "3.11.2",
        "gcs": {"address": "10.0.0.10:6379", "reachable": True},
        "advertised": "10.0.0.11",
        "addresses": ["10.0.0.11", "127.0.0.1"],
        "logs": ["waiting for the head"],
    }
    for key, value in changes.items():
        evidence[key] = value
    return evidence


@pytest.mark.parametrize(
    ("evidence", "cause", "fix"),
    [
        pytest.param(
            healthy(container={"exists": False}),
            "its Ray container does not exist",
            "raydeploy deploy --start-from ray-deployment --limit worker-1",
            id="no container",
        ),
        pytest.param(
            healthy(ray="2.59.0"),
            "it runs Ray 2.59.0 on Python 3.11.2, the head Ray 2.60.0 on Python 3.11.2: "
            "Ray does not support mixing versions in one cluster",
            "one ray_image",
            id="another Ray version",
        ),
        pytest.param(
            healthy(advertised="10.0.0.99"),
            "it advertises 10.0.0.99, which is not an address of this host (its addresses: 10.0.0.11, 127.0.0.1)",
            "set cluster_address of worker-1",
            id="a wrong cluster_address",
        ),
        pytest.param(
            healthy(gcs={"address": "10.0.0.10:6379", "reachable": False}, raylet=False),
            "this host cannot reach the head's GCS at 10.0.0.10:6379",
            "open TCP 6379 from worker-1 to the head",
            id="GCS port blocked",
        ),
        pytest.param(
            healthy(
                container={"exists": True, "running": False, "status": "restarting", "exit_code": 1, "restart_count": 7}
            ),
            "its Ray container is restarting (exit code 1, 7 restarts)",
            "docker logs",
            id="container restarting",
        ),
        pytest.param(
            healthy(raylet=False),
            "raylet is not running in its container",
            "raydeploy diagnose head",
            id="no raylet",
        ),
        pytest.param(healthy(), "raylet runs but the head does not list this node", "object manager", id="not listed"),
    ],
)
def test_each_cause_is_named_with_its_fix(evidence, cause, fix):
    finding = diagnose_node("worker-1", evidence, HEAD, alive=False)
    assert not finding.joined
    assert finding.cause.startswith(cause), finding.cause
    assert fix in finding.fix
    assert f"worker-1: {finding.cause}" in finding.as_text() and f"  fix: {finding.fix}" in finding.as_text()


def test_the_first_cause_wins_a_version_before_a_blocked_port():
    both = healthy(ray="2.59.0", gcs={"address": "10.0.0.10:6379", "reachable": False})
    assert "mixing versions" in diagnose_node("worker-1", both, HEAD, alive=False).cause


def test_a_node_the_head_lists_alive_has_joined_whatever_address_it_advertises():
    finding = diagnose_node("worker-1", healthy(advertised="10.0.0.99"), HEAD, alive=True)
    assert finding == Finding("worker-1", True, "alive in the head's node table")
    assert finding.ok and finding.as_text() == "worker-1: in the cluster"


def test_a_node_of_another_version_that_joined_anyway_is_still_a_finding():
    finding = diagnose_node("worker-1", healthy(ray="2.59.0"), HEAD, alive=True)
    assert finding.joined and not finding.ok
    assert finding.cause.startswith("in the cluster, but it runs Ray 2.59.0")
    assert "one ray_image" in finding.fix


def test_a_node_the_head_still_lists_but_whose_raylet_is_gone_is_out_and_says_why():
    blocked = healthy(raylet=False, gcs={"address": "10.0.0.10:6379", "reachable": False})
    finding = diagnose_node("worker-1", blocked, HEAD, alive=True)
    assert not finding.joined and finding.cause == "this host cannot reach the head's GCS at 10.0.0.10:6379"
    assert diagnose_node("worker-1", {}, HEAD, alive=True).ok, "a silent host the head lists alive is in"


def test_a_silent_host_and_a_silent_head_are_said_as_such():
    assert diagnose_node("worker-1", {}, HEAD, alive=False).cause == "its host did not answer (SSH)"
    unknown = diagnose_node("worker-1", healthy(), {}, alive=None)
    assert "the head did not answer" in unknown.cause and not unknown.joined


def test_the_evidence_shown_is_raylets_errors_when_it_runs_else_the_containers_last_lines():
    running = diagnose_node("worker-1", healthy(), HEAD, alive=False)
    assert running.evidence == healthy()["raylet_errors"]
    stopped = diagnose_node("worker-1", healthy(raylet=False), HEAD, alive=False)
    assert stopped.evidence == ["waiting for the head"]


def test_an_unknown_host_is_refused_naming_the_ray_nodes():
    cluster = make_cluster(workers=2)
    assert [node.name for node in ray_nodes(cluster)] == [node.name for node in cluster.nodes]
    with pytest.raises(ValueError, match="unknown Ray node\\(s\\) nope; the Ray nodes are: "):
        ray_nodes(cluster, ["nope"])
