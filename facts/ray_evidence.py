"""A Ray node's own evidence of why it is (or is not) in the cluster, asked on its host."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

from deploys.host_scripts import python_script


class RayNodeEvidence(FactBase):
    """
    What a Ray node's host says about that node: its container's state and last log lines, raylet
    and its error lines, the Ray and Python versions, whether the head's GCS port answers from this
    host, the address the node advertises and the host's own addresses (see
    deploys/scripts/ray_node_evidence.py). raydeploy/diagnose.py turns it into a cause and a fix.

    .. code:: python

        {"container": {"exists": True, "running": True, "status": "running", "restart_count": 0, ...},
         "raylet": False, "raylet_errors": [], "ray": "2.60.0", "python": "3.11.9",
         "gcs": {"address": "10.0.0.10:6379", "reachable": False},
         "advertised": "10.0.0.11", "addresses": ["10.0.0.11", "127.0.0.1"], "logs": ["..."]}
    """

    requires_command = "docker"
    default = dict

    def command(self, container: str, head_address: str, gcs_port: int, advertised: str) -> str:
        arguments = [container, head_address, str(gcs_port), advertised]
        return python_script("deploys/scripts/ray_node_evidence.py", (), arguments)

    def process(self, output: list[str]) -> dict[str, Any]:
        return json.loads(output[-1]) if output else {}
