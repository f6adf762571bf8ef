"""Run on a worker host that is being removed: drain its Ray node through the GCS, then wait until no
task runs and no actor lives there, or the timeout passes.

    python3 drain_ray_node.py NODE_ADDRESS HEAD_ADDRESS GCS_PORT DASHBOARD_PORT TIMEOUT_S REMOVE_ON_TIMEOUT

Ray's own drain (`ray drain-node`, the GCS DrainNode RPC, reason PREEMPTION: not rejectable, with a
deadline of TIMEOUT_S) marks the node DRAINING: no new work is scheduled there, running work gets
until the deadline. Asked from inside this host's ray-worker container, which holds Ray, the
cluster token and the head's address. Exit 0 when drained (or already gone from Ray), or timed out
with REMOVE_ON_TIMEOUT "yes" (the work still running is named: it will be cut off); else 1. On exit 0
the last line of stdout is the report as JSON, {"node", "drained", "cut_off"}, which the wrapper
logs and audits (raydeploy/node_actions.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from deploys.scripts.polling import wait_until
from facts.ray_answers import NODES_PATH, alive_nodes, head_query, running_work, work_path

WORKER = "ray-worker"


def _shell(command: str) -> str:
    return subprocess.run(command, shell=True, capture_output=True, text=True).stdout


def drain_command(node_id: str, gcs: str, timeout_s: int) -> list[str]:
    return [
        "docker", "exec", WORKER, "ray", "drain-node", f"--address={gcs}", f"--node-id={node_id}",
        "--reason=DRAIN_NODE_REASON_PREEMPTION", "--reason-message=raydeploy remove-node",
        f"--deadline-remaining-seconds={timeout_s}",
    ]  # fmt: skip


def verdict(address: str, cut_off: list[str], remove_on_timeout: bool, timeout_s: float) -> tuple[int, str]:
    """The exit status and what to say when the drain of ADDRESS timed out with CUT_OFF still running."""
    work = "; ".join(cut_off) or "(no answer from Ray's state API)"
    if remove_on_timeout:
        return 0, f"{address}: drain timed out after {timeout_s:g} s; removing anyway (approved), cut off: {work}"
    return 1, (
        f"{address}: drain timed out after {timeout_s:g} s and the approval did not allow removing it anyway; "
        f"nothing was removed, the node stays DRAINING in Ray. Still running there: {work}. Wait for it and run "
        "again, or plan again with a longer --drain-timeout or --remove-on-drain-timeout; to keep the node instead, "
        "run `docker restart ray-worker` on its host once that work is done (Ray has no undrain: the raylet joins "
        "again as a new node)"
    )


def report(address: str, drained: bool, cut_off: list[str]) -> None:
    print(json.dumps({"node": address, "drained": drained, "cut_off": cut_off}))


def main(arguments: list[str]) -> int:
    address, head, gcs_port, dashboard_port = arguments[0], arguments[1], int(arguments[2]), int(arguments[3])
    timeout_s, remove_on_timeout = int(arguments[4]), arguments[5] == "yes"

    def ask(path: str) -> str:
        return _shell(head_query(WORKER, dashboard_port, path, head))

    node = (alive_nodes(ask(NODES_PATH)) or {}).get(address)
    if node is None:
        print(f"{address}: no alive Ray node there, nothing to drain")
        report(address, True, [])
        return 0
    drain = subprocess.run(drain_command(node["node_id"], f"{head}:{gcs_port}", timeout_s), capture_output=True)
    if drain.returncode != 0:
        print(f"{address}: Ray refused the drain: {drain.stderr.decode()[-500:]}", file=sys.stderr)
        return 1
    print(f"{address}: node {node['node_id'][:12]} is DRAINING: no new work goes there")
    last: list[str] = []

    def still_running() -> list[str]:
        alive = alive_nodes(ask(NODES_PATH))
        if alive is not None and address not in alive:
            return []  # the raylet drained and left the cluster
        tasks = running_work(ask(work_path("tasks", node["node_id"])), "tasks")
        actors = running_work(ask(work_path("actors", node["node_id"])), "actors")
        if tasks is None or actors is None:
            return ["(Ray's state API did not answer)"]
        last[:] = tasks + actors
        return last

    if wait_until(still_running, timeout_s, f"{address}: drain not finished", interval_s=2.0) == 0:
        print(f"{address}: drained, no task or actor runs there")
        report(address, True, [])
        return 0
    status, message = verdict(address, last, remove_on_timeout, timeout_s)
    print(message, file=sys.stderr if status else sys.stdout)
    if status == 0:
        report(address, False, last or ["(no answer from Ray's state API)"])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
