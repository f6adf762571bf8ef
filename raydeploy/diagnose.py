"""Why a Ray node is not in the cluster, read from that node's own host: a likely cause and a fix.

"Workers never join, no error" is the most common complaint about running Ray on one's own hosts.
When ray-deployment's wait gives up, and on demand (`raydeploy diagnose [HOST]`), each Ray node's
host is asked for its evidence (facts/ray_evidence.py: its container, raylet and its errors, the
versions, whether the head's GCS port answers from there, the address it advertises) and the head
for its node table and versions; `diagnose_node` reads them in a fixed order, first cause first.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import testinfra

from deploys.components import RAY_HEAD, RAY_WORKER
from deploys.topology import Cluster, Node
from facts.ray import RayNodes
from facts.ray_evidence import RayNodeEvidence
from raydeploy.host_names import check_known
from validate.inventory import LoadedInventory, write_ssh_config
from validate.probes import read_fact


@dataclass(frozen=True)
class Finding:
    """One Ray node: in the cluster or not, and if not the likely cause, the fix and the evidence."""

    host: str
    joined: bool
    cause: str
    fix: str = ""
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """In the cluster, and nothing wrong with it (a node of another Ray version may still join)."""
        return self.joined and not self.fix

    def as_text(self) -> str:
        if self.ok:
            return f"{self.host}: in the cluster"
        lines = [f"{self.host}: {self.cause}", f"  fix: {self.fix}"]
        return "\n".join(lines + [f"  | {line}" for line in self.evidence])

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose_node(name: str, evidence: dict[str, Any], head: dict[str, Any], alive: bool | None) -> Finding:
    """NAME's finding from its EVIDENCE, the HEAD's own evidence and whether the head lists it ALIVE
    (None: the head did not answer)."""
    if alive and not _gone(evidence):
        mixed = _other_version(name, evidence, head) if evidence else None
        if mixed is None:
            return Finding(name, True, "alive in the head's node table")
        return Finding(name, True, f"in the cluster, but {mixed[0]}", mixed[1])
    if not evidence:
        return Finding(name, False, "its host did not answer (SSH)", "check that the host is up and reachable over SSH")
    raylet_up = evidence.get("raylet") and evidence.get("container", {}).get("running")
    shown = evidence.get("raylet_errors", []) if raylet_up else evidence.get("logs", [])[-8:]
    for rule in (_no_container, _other_version, _foreign_address, _gcs_unreachable, _stopped, _no_raylet):
        found = rule(name, evidence, head)
        if found is not None:
            return Finding(name, False, found[0], found[1], shown)
    if alive is None:
        return Finding(
            name,
            False,
            "this host shows no fault, but the head did not answer: whether the node is in the cluster is unknown",
            "see the head's own finding (raydeploy diagnose head)",
            shown,
        )
    return Finding(
        name,
        False,
        "raylet runs but the head does not list this node",
        "see raylet's errors below; the head must reach this host's raylet and object manager ports",
        shown,
    )


def _gone(evidence: dict) -> bool:
    """The head still lists the node, but no raylet runs on its host any more (a restarted container):
    the head marks it dead only after its health checks miss, so the host's word counts."""
    container = evidence.get("container", {})
    return bool(evidence) and (not container.get("exists") or not evidence.get("raylet"))


def _no_container(name: str, evidence: dict, head: dict) -> tuple[str, str] | None:
    if evidence.get("container", {}).get("exists"):
        return None
    return (
        "its Ray container does not exist",
        f"run ray-deployment: raydeploy deploy --start-from ray-deployment --limit {name}",
    )


def _other_version(name: str, evidence: dict, head: dict) -> tuple[str, str] | None:
    here, there = (evidence.get("ray"), evidence.get("python")), (head.get("ray"), head.get("python"))
    if not all(here + there) or here == there:
        return None
    return (
        f"it runs Ray {here[0]} on Python {here[1]}, the head Ray {there[0]} on Python {there[1]}: "
        "Ray does not support mixing versions in one cluster",
        "give every node the head's image (one ray_image in the inventory) and re-run ray-deployment",
    )


def _foreign_address(name: str, evidence: dict, head: dict) -> tuple[str, str] | None:
    advertised, addresses = evidence.get("advertised", ""), evidence.get("addresses", [])
    if not advertised or not addresses or advertised in addresses:
        return None
    return (
        f"it advertises {advertised}, which is not an address of this host (its addresses: {', '.join(addresses)})",
        f"set cluster_address of {name} in the inventory to the address the head reaches it at, then re-run "
        "ray-deployment",
    )


def _gcs_unreachable(name: str, evidence: dict, head: dict) -> tuple[str, str] | None:
    gcs = evidence.get("gcs", {})
    if gcs.get("reachable", True):
        return None
    port = str(gcs.get("address", "")).rpartition(":")[2]
    return (
        f"this host cannot reach the head's GCS at {gcs.get('address')}",
        f"open TCP {port} from {name} to the head (a firewall or a route), or fix the head's cluster_address",
    )


def _stopped(name: str, evidence: dict, head: dict) -> tuple[str, str] | None:
    container = evidence.get("container", {})
    if container.get("running"):
        return None
    return (
        f"its Ray container is {container.get('status')} (exit code {container.get('exit_code')}, "
        f"{container.get('restart_count')} restarts)",
        "read its last lines below (docker logs on the host); re-run ray-deployment once fixed",
    )


def _no_raylet(name: str, evidence: dict, head: dict) -> tuple[str, str] | None:
    if evidence.get("raylet"):
        return None
    return (
        "raylet is not running in its container: the node is still waiting for the head's GCS or failed to start",
        "check the head is healthy (raydeploy diagnose head) and read the lines below",
    )


def ray_nodes(cluster: Cluster, hosts: list[str] | None = None) -> list[Node]:
    """The cluster's Ray nodes, or those named in HOSTS (UnknownHosts, a ValueError, lists the known ones)."""
    known = {node.name: node for node in cluster.nodes}
    check_known(hosts or [], known, kind="Ray node", known_as="the Ray nodes")
    return [known[name] for name in hosts] if hosts else list(known.values())


def evidence_of(host, node: Node, cluster: Cluster) -> dict[str, Any]:
    """NODE's evidence, asked on its testinfra HOST; {} when the host does not answer."""
    container = RAY_HEAD if node.role == "head" else RAY_WORKER
    head = cluster.head.settings
    try:
        return read_fact(
            host, RayNodeEvidence, container=container, head_address=head.cluster_address,
            gcs_port=head.ray_gcs_port, advertised=node.settings.cluster_address,
        )  # fmt: skip
    except Exception:  # an unreachable host is a finding of its own
        return {}


def diagnose(loaded: LoadedInventory, hosts: list[str] | None = None) -> list[Finding]:
    """A finding for each Ray node of LOADED (or each of HOSTS), asked over SSH in parallel."""
    cluster = loaded.cluster
    nodes = ray_nodes(cluster, hosts)
    with tempfile.TemporaryDirectory(prefix="raydeploy-diagnose-") as scratch:
        ssh_config = write_ssh_config(loaded.ssh, Path(scratch))

        def connect(name: str):
            return testinfra.get_host(f"ssh://{name}", ssh_config=str(ssh_config))

        head = connect(cluster.head.name)
        with ThreadPoolExecutor(max_workers=len(nodes) + 1) as pool:
            alive_future = pool.submit(_alive, head, cluster)
            head_future = pool.submit(evidence_of, head, cluster.head, cluster)
            found = {node.name: pool.submit(evidence_of, connect(node.name), node, cluster) for node in nodes}
            alive, head_evidence = alive_future.result(), head_future.result()
            listed = (lambda node: None) if alive is None else (lambda node: node.settings.cluster_address in alive)
            return [diagnose_node(node.name, found[node.name].result(), head_evidence, listed(node)) for node in nodes]


def _alive(head, cluster: Cluster) -> dict[str, dict] | None:
    """The head's ALIVE nodes by address; None when the head (or its Ray) does not answer."""
    try:
        nodes = read_fact(head, RayNodes, container=RAY_HEAD, port=cluster.head.settings.ray_dashboard_port)
    except Exception:
        return None
    return nodes or None
