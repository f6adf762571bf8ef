"""The day-2 actions' arguments as the host data their deploy files read (one form for the CLI and the API)."""

from __future__ import annotations

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
