"""A worker that does not join is explained, not just timed out: broken three ways on the lab (the
head's GCS port blocked on the worker, a wrong cluster_address, a worker running the real Ray 2.59.0),
each gets its own cause, from `raydeploy diagnose` and from the deploy whose wait gave up."""

from __future__ import annotations

import json
import time

import pytest

from deploys.components import RAY_HEAD
from facts.ray_answers import NODES_PATH, head_query
from raydeploy.lab.images import ray_mirror_ref
from tests.conftest import REPO
from tests.lab.test_wrapper import RAY_IMAGE, raydeploy_runner

OLD_RAY = "2.59.0"  # a real earlier release, built from PyPI into the lab's mirror

SHORT_WAIT = """
import runpy

_lab = runpy.run_path({lab!r})
_changes = {changes!r}


def _short(hosts):
    return [(name, {{**data, "ray_join_timeout_s": 20, **_changes.get(name, {{}})}}) for name, data in hosts]


head = _short(_lab["head"])
workers = _short(_lab["workers"])
"""


@pytest.fixture(scope="module")
def cluster(make_lab, tmp_path_factory):
    """A deployed 1+1 lab, and a function running raydeploy with an inventory whose join wait is 20 s."""
    lab = make_lab("diagnose")
    lab.up("--workers", "1")
    state_dir = tmp_path_factory.mktemp("diagnose-state")
    wrapper = raydeploy_runner({**lab.env, "RAYDEPLOY_STATE_DIR": str(state_dir)})
    wrapper("deploy", "--auto-approve", check=True)
    scratch = tmp_path_factory.mktemp("inventories")

    def with_inventory(*args: str, changes: dict | None = None):
        inventory = scratch / f"short-{time.monotonic_ns()}.py"
        inventory.write_text(SHORT_WAIT.format(lab=str(REPO / "inventories" / "lab.py"), changes=changes or {}))
        return wrapper(*args, "-i", str(inventory))

    yield lab, wrapper, with_inventory
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def back_in(lab, wrapper) -> None:
    """Redeploy Ray with the lab's own inventory and wait until both nodes are alive again."""
    wrapper("deploy", "--only", "ray-deployment", "--auto-approve", check=True)
    assert wrapper("diagnose").returncode == 0


def test_a_blocked_gcs_port_is_diagnosed(cluster):
    lab, wrapper, with_inventory = cluster
    worker, head_address = lab.host("worker-1"), lab.state().head.cluster_address
    rule = f"OUTPUT -p tcp -d {head_address} --dport 6379 -j REJECT"
    worker.check_output(f"iptables -I {rule}")
    try:
        worker.check_output("docker restart ray-worker")
        time.sleep(5)
        # The head lists the node of the container before its restart ALIVE for a while yet: a deploy now
        # must not count it as the worker being in the cluster (the container changes nothing, so the deploy
        # recreates nothing: only the node's start, before the container's, gives it away).
        waited = with_inventory("deploy", "--only", "ray-deployment", "--auto-approve")
        assert waited.returncode == 1, waited.output
        assert f"worker-1: this host cannot reach the head's GCS at {head_address}:6379" in waited.output
        found = wrapper("diagnose", "worker-1")
        assert found.returncode == 1, found.output
        assert f"worker-1: this host cannot reach the head's GCS at {head_address}:6379" in found.output
        assert "fix: open TCP 6379 from worker-1 to the head" in found.output
    finally:
        worker.run(f"iptables -D {rule}")
    back_in(lab, wrapper)


def test_a_wrong_cluster_address_is_diagnosed_when_the_deploys_wait_gives_up(cluster):
    lab, wrapper, with_inventory = cluster
    wrong = lab.state().head.cluster_address.rsplit(".", 1)[0] + ".99"
    waited = with_inventory(
        "deploy", "--only", "ray-deployment", "--auto-approve", changes={"worker-1": {"cluster_address": wrong}}
    )
    assert waited.returncode == 1, waited.output
    assert "asking each Ray node why it is not in the cluster" in waited.output
    assert f"worker-1: it advertises {wrong}, which is not an address of this host" in waited.output
    assert "fix: set cluster_address of worker-1" in waited.output
    back_in(lab, wrapper)


def test_another_ray_version_is_diagnosed(cluster):
    lab, wrapper, with_inventory = cluster
    # Ray 2.59.0 from PyPI into the lab's mirror; the lab's own version (its inventory's ray_image) stays 2.60.0.
    lab.up("--workers", "1", "--ray-version", OLD_RAY)
    lab.up("--workers", "1", "--ray-version", "2.60.0")
    assert lab.state().ray_image == RAY_IMAGE
    worker = lab.host("worker-1")
    # The real 2.59.0 image under the tag the inventory names: the deploy sees its image present and makes
    # worker-1's container from it (an inventory naming 2.59.0 for one host is refused before anything runs).
    worker.check_output(f"docker pull -q {ray_mirror_ref(OLD_RAY)} && docker tag {ray_mirror_ref(OLD_RAY)} {RAY_IMAGE}")
    worker.check_output("docker rm -f ray-worker")
    try:
        waited = with_inventory("deploy", "--only", "ray-deployment", "--auto-approve")
        found = wrapper("diagnose", "worker-1")
        assert found.returncode == 1, found.output
        said = f"it runs Ray {OLD_RAY} on Python 3.11"
        assert said in found.output and "the head Ray 2.60.0 on Python 3.11" in found.output, found.output
        assert "fix: give every node the head's image" in found.output, found.output
        # A real 2.59.0 `ray start` refuses the 2.60.0 cluster's metadata, so this worker never joins.
        assert waited.returncode == 1, waited.output
        assert f"worker-1: {said}" in waited.output, waited.output
    finally:
        worker.check_output(f"docker rm -f ray-worker; docker rmi {RAY_IMAGE} {ray_mirror_ref(OLD_RAY)}")
    back_in(lab, wrapper)


def alive_node_ids(lab, address: str) -> list[str]:
    """The ids of the nodes the head's node table lists ALIVE at ADDRESS, asked inside the head container."""
    answer = lab.host("head").check_output(head_query(RAY_HEAD, 8265, NODES_PATH))
    rows = json.loads(answer)["data"]["result"]["result"]
    return [row["node_id"] for row in rows if row["node_ip"] == address and row["state"] == "ALIVE"]


def test_a_recreated_worker_counts_as_joined_only_once_its_new_node_has(cluster):
    """The head lists a killed node ALIVE until its health checks miss, tens of seconds later: a deploy that
    recreates a worker's container must wait for the new node, not end on the old one's entry."""
    lab, wrapper, _ = cluster
    address = lab.state().host("worker-1").cluster_address
    (old,) = alive_node_ids(lab, address)
    lab.host("worker-1").check_output("docker rm -f ray-worker")  # killed: the head is not told
    wrapper("deploy", "--only", "ray-deployment", "--auto-approve", check=True)
    now = alive_node_ids(lab, address)
    assert len(now) == 1 and now != [old], f"right after the deploy worker-1 is {now}, before it was {old}"
    assert wrapper("diagnose").returncode == 0
