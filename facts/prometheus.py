"""What the deployed Prometheus scrapes, asked inside its container."""

from __future__ import annotations

import json
import shlex

from pyinfra.api import FactBase


class PrometheusTargets(FactBase):
    """
    The active targets of the Prometheus in CONTAINER: the healthy ones as ``{job: [node label, ...]}``,
    and every other one described; both empty when it does not answer.

    .. code:: python

        {"up": {"node": ["head", "worker-1"], "ray": ["head", "head", "worker-1"]},
         "down": ["ray/head http://10.0.0.1:44227/metrics: connection refused"]}
    """

    requires_command = "docker"

    @staticmethod
    def default() -> dict:
        return {"up": {}, "down": []}

    def command(self, container: str = "prometheus", port: int = 9090) -> str:
        url = f"http://127.0.0.1:{int(port)}/api/v1/targets?state=active"
        return f"docker exec {shlex.quote(container)} wget -q -O - {shlex.quote(url)} 2>/dev/null || echo '{{}}'"

    def process(self, output: list[str]) -> dict:
        try:
            targets = json.loads("\n".join(output))["data"]["activeTargets"]
        except (ValueError, KeyError, TypeError):
            return self.default()
        found = self.default()
        for target in targets:
            labels = target.get("labels") or {}
            if target.get("health") == "up":
                found["up"].setdefault(str(labels.get("job")), []).append(str(labels.get("node")))
            else:
                found["down"].append(describe_down(target))
        return found


def describe_down(target: dict) -> str:
    """A target Prometheus does not scrape successfully, as `job/node url: error` (or its health)."""
    labels = target.get("labels") or {}
    return (
        f"{labels.get('job')}/{labels.get('node', '?')} {target.get('scrapeUrl')}: "
        f"{target.get('lastError') or target.get('health')}"
    )
