"""final-validation on GPU hosts: Ray counts every GPU nvidia-smi lists there, and a task that asks
for a GPU runs on each GPU node and sees one (CUDA_VISIBLE_DEVICES set by Ray).

Clusters without a `gpu: nvidia` node get no GPU result at all. None of this has run on a real GPU
here (this machine has none): the pure parts are unit-tested (tests/unit/test_groups.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from deploys.gpus import no_driver, offered_gpus
from deploys.topology import Cluster, Node
from facts.gpus import NvidiaGpus
from validate.http_checks import alive_nodes, ray_headers
from validate.probes import read_fact
from validate.results import CLUSTER, Result, failed, verdict
from validate.smoke import job_logs

RAY, FINAL = "ray-deployment", "final-validation"
MARKER = "RAYDEPLOY_GPU "
# One single-GPU task pinned to each GPU node (argv: the nodes' addresses), reporting what it saw.
JOB = """
import json, os, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()

@ray.remote(num_gpus=1, num_cpus=0.01)
def seen():
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")

ids = {node["NodeManagerAddress"]: node["NodeID"] for node in ray.nodes() if node["Alive"]}
wanted = json.loads(sys.argv[1])
refs = {address: seen.options(scheduling_strategy=NodeAffinitySchedulingStrategy(ids[address], soft=False)).remote()
        for address in wanted if address in ids}
print("RAYDEPLOY_GPU " + json.dumps({address: ray.get(ref, timeout=90) for address, ref in refs.items()}))
"""


def gpu_nodes(cluster: Cluster) -> list[Node]:
    return [node for node in cluster.nodes if node.settings.gpu == "nvidia"]


def ray_gpus(host, node: Node, cluster: Cluster, secret_of: Callable[[str], str]) -> list[Result]:
    """On a GPU host: Ray counts as many GPUs as nvidia-smi lists (or as the settings offer)."""
    if node not in gpu_nodes(cluster):
        return []
    found = read_fact(host, NvidiaGpus)
    if found["driver"] is None:
        return [failed(RAY, "ray gpus", node.name, f"{no_driver(node.name)} ({found['error']})")]
    alive = alive_nodes(cluster, ray_headers(cluster, secret_of))
    counted = alive.get(node.settings.cluster_address, {}).get("resources", {}).get("GPU", 0)
    expected = offered_gpus(node.settings, len(found["gpus"]))
    problems = [] if counted == expected else [f"Ray counts {counted:g} GPUs, nvidia-smi lists {len(found['gpus'])}"]
    return [verdict(RAY, "ray gpus", node.name, problems, f"Ray counts {counted:g} GPUs, driver {found['driver']}")]


def gpu_job(cluster: Cluster, secret_of: Callable[[str], str]) -> list[Result]:
    """A task asking for a GPU runs on every GPU node and sees CUDA_VISIBLE_DEVICES set."""
    nodes = gpu_nodes(cluster)
    if not nodes:
        return []
    addresses = [node.settings.cluster_address for node in nodes]
    script = JOB.replace("wanted = json.loads(sys.argv[1])", f"wanted = {json.dumps(addresses)}")
    logs, failure = job_logs(cluster, secret_of, script, "ray gpu job", "gpu")
    if failure:
        return [failure]
    line = next((line for line in logs.splitlines() if line.startswith(MARKER)), "")
    try:
        seen = json.loads(line[len(MARKER) :])
    except ValueError:
        return [failed(FINAL, "ray gpu job", CLUSTER, "the GPU job printed no report")]
    return [verdict(FINAL, "ray gpu job", CLUSTER, gpu_job_problems(nodes, seen), f"saw GPUs {seen}")]


def gpu_job_problems(nodes: list[Node], seen: dict[str, str]) -> list[str]:
    """Each GPU node whose GPU task did not run, or ran without a GPU (CUDA_VISIBLE_DEVICES empty)."""
    problems = []
    for node in nodes:
        devices = seen.get(node.settings.cluster_address)
        if devices is None:
            problems.append(f"{node.label}: no task asking for a GPU ran there")
        elif not devices:
            problems.append(f"{node.label}: the GPU task ran without CUDA_VISIBLE_DEVICES (it saw no GPU)")
    return problems
