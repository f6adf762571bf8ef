"""A new Ray release on a running cluster: found, announced, and carried out with the least downtime.

Ray has no rolling upgrade: every node of a cluster runs one Ray release. ray-deployment therefore
turns a change of release into one cluster-wide restart, in this order, each step one operation on
every node at once:

1. every host pulls the new image while the old cluster still runs (`images_present`);
2. every Ray container stops (`ray_stopped`): from here the cluster is down;
3. the head is recreated on the new release, then the workers (each waits for the new head's GCS
   before it joins);
4. the head waits until every node is alive, then deletes the old cluster's GCS tables from Redis
   (`old_gcs_state_removed`): the new head keeps its own under another namespace
   (deploys/ray_versions.py), so it never reads the old cluster's state.

The head's plan says so in words and as data (deploys/disruptions.py), which makes the wrapper ask
for an approval with the risks acknowledged.
"""

from __future__ import annotations

import shlex

from pyinfra import host, inventory
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_state

from deploys.components import RAY_HEAD, RAY_WORKER
from deploys.disruptions import disruptive
from deploys.host_facts import fact_since_last_change
from deploys.ray_versions import describe_change, same_release
from deploys.topology import Cluster, Node
from facts.containers import COMPONENT_LABEL, Containers

RESTART = "cluster-restart"
# Measured by `python -m bench upgrade` (README, "Measured"): from the first Ray container stopped to
# every node alive on the new release. Ray's start on the slowest node sets it on other hosts.
EXPECTED_DOWNTIME = "15 s (measured on the lab's 3 hosts: as long as Ray takes to start on the slowest node)"
STOP_GRACE_S = 5

# Ray's own helper deletes every key of one GCS namespace (`RAY<namespace>@...`) from Redis; it runs in
# the new head's container, which has Ray and the mounted password file (argv: file, port, namespace).
REMOVE_NAMESPACE = (
    "import sys; from ray._private.gcs_utils import cleanup_redis_storage; "
    "cleanup_redis_storage(host='127.0.0.1', port=int(sys.argv[2]), password=open(sys.argv[1]).read().strip(), "
    "use_ssl=False, storage_namespace=sys.argv[3])"
)


def running_ray(node: Node) -> dict | None:
    """The Ray container raydeploy runs on NODE now (its view from the Containers fact), or None."""
    found = fact_since_last_change(Containers).get(RAY_HEAD if node.role == "head" else RAY_WORKER)
    return found if found and COMPONENT_LABEL in found["labels"] else None


def release_change(node: Node) -> tuple[str, str] | None:
    """(running image, wanted image) when NODE's Ray container runs another release than its settings say."""
    running = running_ray(node)
    if running is None or same_release(running["image"], node.settings.ray_image):
        return None
    return running["image"], node.settings.ray_image


def outside_limit(cluster: Cluster) -> list[str]:
    """The Ray nodes this run leaves out (pyinfra's --limit)."""
    state = ctx_state.get()
    return [node.name for node in cluster.nodes if not state.is_host_in_limit(inventory.get_host(node.name))]


def plan_release_change(node: Node, cluster: Cluster) -> bool:
    """Whether NODE takes part in a change of Ray release; on the head, announce the cluster-wide
    restart. A change that would leave nodes of the old release behind (--limit) stops the deploy."""
    change = release_change(node)
    if change is None:
        return False
    left_out = outside_limit(cluster)
    if left_out:
        raise DeployError(
            f"{node.name}: {describe_change(*change)} restarts every Ray node together, and this run leaves out "
            f"{', '.join(left_out)} (--limit): they would stay on the old release, which Ray refuses in one "
            "cluster. Nothing was changed: run ray-deployment without --limit."
        )
    if node.role == "head":
        disruptive(
            RESTART,
            f"cluster-wide restart: {describe_change(*change)} on {len(cluster.nodes)} nodes "
            f"({', '.join(n.name for n in cluster.nodes)}); every Ray node stops, then all start on the new "
            "release: running jobs, tasks and actors end, and the cluster is down until every node has "
            f"joined again; expected downtime about {EXPECTED_DOWNTIME}, the run waits up to ray_join_timeout_s = "
            f"{node.settings.ray_join_timeout_s} s",
        )
    return True


@operation()
def ray_stopped(container_name: str):
    """
    Stop CONTAINER_NAME (a Ray container about to be recreated on a new release), so that no node of
    the old release is left running while the new cluster starts.

    + container_name: ``ray-head`` or ``ray-worker``

    **Example:**

    .. code:: python

        ray_stopped(name="Stop Ray for the cluster-wide restart", container_name="ray-worker")
    """
    current = fact_since_last_change(Containers).get(container_name)
    if current is None or not current["running"]:
        host.noop(f"container {container_name} is not running")
        return
    yield f"docker stop --time {STOP_GRACE_S} {shlex.quote(container_name)}"


@operation()
def old_gcs_state_removed(namespace: str, redis_port: int, password_file: str):
    """
    Delete the old cluster's GCS tables (Redis keys ``RAY<namespace>@...``) once the new cluster runs.

    + namespace: the old cluster's ``RAY_external_storage_namespace``
    + redis_port: Redis's port on the head
    + password_file: where the Redis password file is mounted in the ``ray-head`` container

    **Example:**

    .. code:: python

        old_gcs_state_removed(namespace="raydeploy-2.59.0-py3.11", redis_port=6379,
                              password_file="/run/raydeploy/redis-password")
    """
    arguments = " ".join(shlex.quote(str(value)) for value in (password_file, redis_port, namespace))
    yield f"docker exec {RAY_HEAD} python3 -c {shlex.quote(REMOVE_NAMESPACE)} {arguments}"
