"""The day-2 actions' arguments as the host data their deploy files read (one form for the CLI and the API),
and what a remove-node's drains reported."""

from __future__ import annotations

import json
import re

from raydeploy.approvals import ApprovalError, parse_ttl

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")

# Keys deploys/node_removal.py reads (the deploys never import the wrapper, so they are spelled twice).
REMOVE_HOSTS, DRAIN_TIMEOUT, REMOVE_ON_TIMEOUT = "remove_hosts", "drain_timeout", "remove_on_drain_timeout"


def removal_data(hosts: list[str], drain_timeout: str, remove_on_timeout: bool) -> dict[str, str]:
    """remove-node's arguments as host data; ValueError naming a bad one (a duration like 30s, 5m, 1h)."""
    names = [name.strip() for name in hosts if name.strip()]
    if not names or not all(HOST_NAME.fullmatch(name) for name in names):
        raise ValueError(f"hosts {hosts!r}: give inventory host names, e.g. worker-2")
    try:
        seconds = int(parse_ttl(drain_timeout).total_seconds())
    except ApprovalError:
        raise ValueError(f"drain timeout {drain_timeout!r}: give a duration like 30s, 5m, 1h") from None
    return {
        REMOVE_HOSTS: ",".join(dict.fromkeys(names)),
        DRAIN_TIMEOUT: str(seconds),
        REMOVE_ON_TIMEOUT: "yes" if remove_on_timeout else "no",
    }


def removal_refusals(inventory: str, name: str, data: dict[str, str]) -> list[str]:
    """Why day-2 action NAME with DATA is refused, judged from INVENTORY before any host is contacted: for
    remove-node, deploys/node_removal.py's rules (unknown hosts, the head, the monitoring host); [] otherwise.

    The deploy judges them again on the hosts (a plain pyinfra run has no wrapper), but there, with a host
    unreachable, SSH fails first and the operator never reads why. InventoryError when it cannot be read.
    """
    if name != "remove-node":
        return []
    from deploys.node_removal import removal_problems
    from validate.inventory import load

    hosts = tuple(dict.fromkeys(host.strip() for host in data.get(REMOVE_HOSTS, "").split(",") if host.strip()))
    return removal_problems(load(inventory).cluster, hosts) if hosts else []


DRAIN_OPERATION = "Drain the Ray node"  # deploys/node_removal.py's operation; its script reports in JSON


def drain_reports(rows: list[tuple[str, str, str, str]]) -> dict[str, dict]:
    """Per removed host, the report its drain printed last (deploys/scripts/drain_ray_node.py):
    {"node", "drained", "cut_off"}; hosts whose drain did not run or did not report are left out.

    >>> drain_reports([("worker-1", "Remove nodes | Drain the Ray node", "changed",
    ...                 'draining\\n{"node": "10.0.0.3", "drained": false, "cut_off": ["actor Keeper 1f"]}')])
    {'worker-1': {'node': '10.0.0.3', 'drained': False, 'cut_off': ['actor Keeper 1f']}}
    """
    reports = {}
    for host, operation, result, output in rows:
        if not operation.endswith(DRAIN_OPERATION) or result == "failed" or not output.strip():
            continue
        try:
            found = json.loads(output.strip().splitlines()[-1])
        except ValueError:
            continue
        if isinstance(found, dict) and {"node", "drained", "cut_off"} <= set(found):
            reports[host] = found
    return reports
