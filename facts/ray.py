"""Ray's view of the cluster, asked from the head's dashboard (inside the head container)."""

from __future__ import annotations

import json
import shlex
from typing import Any

from pyinfra.api import FactBase


class RayNodes(FactBase):
    """
    The nodes the Ray head knows, by node IP: state and total resources. Empty when Ray does not answer.

    .. code:: python

        {"10.0.0.11": {"state": "ALIVE", "cpus": 16.0, "node_id": "..."}}
    """

    requires_command = "docker"
    default = dict

    def command(self, container: str = "ray-head", port: int = 8265) -> str:
        # Ray's state API asks the GCS (the dashboard's /nodes summary is a cache that lags).
        # The token comes from the container's own environment, so it never appears on a command line.
        query = (
            'curl -sf --max-time 5 ${RAY_AUTH_TOKEN:+-H "Authorization: Bearer $RAY_AUTH_TOKEN"} '
            f"'http://127.0.0.1:{int(port)}/api/v0/nodes?limit=1000&detail=1'"
        )
        return f"docker exec {shlex.quote(container)} sh -c {shlex.quote(query)} 2>/dev/null || echo '{{}}'"

    def process(self, output: list[str]) -> dict[str, dict[str, Any]]:
        try:
            rows = json.loads("\n".join(output))["data"]["result"]["result"]
        except (ValueError, KeyError, TypeError):
            return {}
        nodes: dict[str, dict[str, Any]] = {}
        for row in rows:
            address, state = row.get("node_ip"), row.get("state", "")
            # A restarted node leaves a DEAD entry beside its ALIVE one: ALIVE wins.
            if address and (address not in nodes or state == "ALIVE"):
                nodes[address] = {
                    "state": state,
                    "cpus": float((row.get("resources_total") or {}).get("CPU", 0)),
                    "node_id": row.get("node_id", ""),
                }
        return nodes
