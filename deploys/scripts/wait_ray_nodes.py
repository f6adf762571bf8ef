"""Run on the Ray head host: wait until every expected node is alive, serves its metrics, and is
listed by `ray status`; exit 1 naming what is missing after the timeout.

    python3 wait_ray_nodes.py EXPECTED_JSON DASHBOARD_PORT TIMEOUT_S [REPLACED_JSON]

EXPECTED_JSON maps each node's cluster address to [its name, its metrics export port]. The node
table answers first; `ray status` (what an operator looks at) lags it by a few seconds, so the wait
ends only when both agree. REPLACED_JSON maps the address of each node whose container this run
recreated to the id its node had before: the head lists a killed node ALIVE until its health checks
miss, so that id does not count as the node being back.
"""

from __future__ import annotations

import json
import subprocess
import sys

from deploys.scripts.polling import wait_until
from facts.ray_answers import NODES_PATH, STATUS_PATH, alive_nodes, head_query, status_active_nodes, status_total

HEAD = "ray-head"


def not_ready(
    expected: dict[str, tuple[str, int]],
    alive: dict[str, dict],
    active: set[str] | None,
    exporting: set[str],
    status_cpus: float | None = None,
    replaced: dict[str, str] | None = None,
) -> list[str]:
    """What keeps the cluster from being ready, one entry per node and reason; [] when ready.

    + expected: cluster address -> (node name, metrics export port)
    + alive: the node table's ALIVE nodes, by address
    + active: the node ids `ray status` lists as Active (None: no answer)
    + exporting: the addresses whose metrics port answers
    + status_cpus: the CPUs `ray status` counts (None: not known)
    + replaced: address -> the node id from before its container was recreated in this run
    """
    missing = []
    for address, (name, metrics_port) in expected.items():
        node = alive.get(address)
        if node is None:
            missing.append(f"{name} ({address}) not alive")
            continue
        if node["node_id"] == (replaced or {}).get(address):
            missing.append(f"{name} ({address}) not back yet: the head still lists the node its old container ran")
            continue
        if address not in exporting:
            missing.append(f"{name} ({address}: metrics port {metrics_port})")
        if active is None or node["node_id"] not in active:
            missing.append(f"{name} ({address}) not yet in `ray status`")
    if active is not None:
        # An old node id still listed (a recreated node) would show the operator one node too many.
        stale = active - {node["node_id"] for node in alive.values()}
        missing += [f"`ray status` still lists node {node_id[:12]}, not alive" for node_id in sorted(stale)]
    cpus = sum(node["resources"].get("CPU", 0.0) for node in alive.values())
    if status_cpus is not None and abs(status_cpus - cpus) > 1e-6:
        # Its totals lag its node list: right after a recreate it still counts the old nodes' CPUs.
        missing.append(f"`ray status` counts {status_cpus:g} CPUs, the alive nodes have {cpus:g}")
    return missing


def _shell(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True).stdout


def _exporting(address: str, metrics_port: int) -> bool:
    url = f"http://{address}:{metrics_port}/metrics"
    probe = ["docker", "exec", HEAD, "curl", "-sf", "--max-time", "3", "-o", "/dev/null", url]
    return subprocess.run(probe, capture_output=True).returncode == 0


def main(arguments: list[str]) -> int:
    expected = {address: (name, int(port)) for address, (name, port) in json.loads(arguments[0]).items()}
    dashboard_port, timeout_s = int(arguments[1]), float(arguments[2])
    replaced = json.loads(arguments[3]) if len(arguments) > 3 else {}

    def missing_now() -> list[str]:
        alive = alive_nodes(_shell(head_query(HEAD, dashboard_port, NODES_PATH))) or {}
        status = _shell(head_query(HEAD, dashboard_port, STATUS_PATH))
        exporting = {
            address for address, (_, port) in expected.items() if address in alive and _exporting(address, port)
        }
        cpus = status_total(status, "CPU")
        return not_ready(expected, alive, status_active_nodes(status), exporting, cpus, replaced)

    status = wait_until(missing_now, timeout_s, "Ray nodes not ready")
    if status == 0:
        print(f"all {len(expected)} Ray nodes alive, exporting metrics and listed by `ray status`")
    else:
        print("each missing node's likely cause and fix: raydeploy diagnose", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
