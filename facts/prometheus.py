"""What the deployed Prometheus scrapes, asked inside its container."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase


class PrometheusTargetsUp(FactBase):
    """
    The healthy targets of the Prometheus in CONTAINER, as ``{job: [node label, ...]}``; empty when it does not answer.

    .. code:: python

        {"node": ["head", "worker-1"], "ray": ["head", "head", "worker-1"]}
    """

    requires_command = "docker"
    default = dict

    def command(self, container: str = "prometheus", port: int = 9090) -> str:
        url = f"http://127.0.0.1:{int(port)}/api/v1/targets?state=active"
        return f"docker exec {shlex.quote(container)} wget -q -O - {shlex.quote(url)} 2>/dev/null || echo '{{}}'"

    def process(self, output: list[str]) -> dict[str, list[str]]:
        try:
            targets = json.loads("\n".join(output))["data"]["activeTargets"]
        except (ValueError, KeyError, TypeError):
            return {}
        up: dict[str, list[str]] = {}
        for target in targets:
            labels = target.get("labels") or {}
            if target.get("health") == "up":
                up.setdefault(str(labels.get("job")), []).append(str(labels.get("node")))
        return up
