"""What the deployed Prometheus scrapes, asked inside its container."""

from __future__ import annotations

from pyinfra.api import FactBase

from facts.prometheus_answers import TARGETS_PATH, asked_again_if_unsettled, describe_down, prometheus_query, targets


class PrometheusTargets(FactBase):
    """
    The active targets of the Prometheus in CONTAINER: the healthy ones as ``{job: [node label, ...]}``,
    and every other one described; both empty when it does not answer. With SETTLE_S, a target down or not
    yet scraped is asked about again SETTLE_S later (a scrape interval and a little): one scrape that failed
    on a loaded host is not a target down, and a re-run that finds only that changes nothing.

    .. code:: python

        {"up": {"node": ["head", "worker-1"], "ray": ["head", "head", "worker-1"]},
         "down": ["ray/head http://10.0.0.1:44227/metrics: connection refused"]}
    """

    requires_command = "docker"

    @staticmethod
    def default() -> dict:
        return {"up": {}, "down": []}

    def command(self, container: str = "prometheus", port: int = 9090, settle_s: int = 0) -> str:
        return asked_again_if_unsettled(prometheus_query(container, port, TARGETS_PATH), settle_s)

    def process(self, output: list[str]) -> dict:
        try:
            found = targets("\n".join(output))
        except ValueError:
            return self.default()
        up: dict[str, list[str]] = {}
        for target in found:
            if target["health"] == "up":
                up.setdefault(target["job"], []).append(target["node"])
        return {"up": up, "down": [describe_down(target) for target in found if target["health"] != "up"]}
