"""What Prometheus answers about its scrape targets, read into plain data.

Plain Python, no pyinfra: the PrometheusTargets fact, validate, the API and the wait script that
runs on the monitoring host (deploys/scripts/wait_prometheus_targets.py) all use these.
"""

from __future__ import annotations

import json
import shlex

TARGETS_PATH = "/api/v1/targets?state=active"


def prometheus_query(container: str, port: int, path: str) -> str:
    """A shell command printing Prometheus's answer at PATH, asked inside CONTAINER ('{}' if none)."""
    url = f"http://127.0.0.1:{int(port)}{path}"
    return f"docker exec {shlex.quote(container)} wget -q -O - {shlex.quote(url)} 2>/dev/null || echo '{{}}'"


def asked_again_if_unsettled(ask: str, settle_s: int) -> str:
    """Shell: run ASK (a command printing an answer to TARGETS_PATH); when a target in it is down or not yet
    scraped, print ASK's answer SETTLE_S seconds later instead (0: ASK alone). Prometheus writes its JSON
    without spaces, so the health of a target reads `"health":"down"`."""
    if not settle_s:
        return ask
    unsettled = """*'"health":"down"'*|*'"health":"unknown"'*"""
    return f'answer=$({ask}); case "$answer" in {unsettled}) sleep {int(settle_s)}; {ask};; *) echo "$answer";; esac'


def targets(answer: str) -> list[dict[str, str]]:
    """The active targets in an answer to TARGETS_PATH; ValueError when it is not one.

    .. code:: python

        [{"job": "ray", "node": "head", "health": "up", "url": "http://10.0.0.1:44227/metrics",
          "error": "", "last_scrape": "2026-11-30T07:03:24.42Z"}]
    """
    try:
        found = json.loads(answer)["data"]["activeTargets"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"not a list of Prometheus targets: {error!r}") from None
    if not isinstance(found, list):
        raise ValueError("not a list of Prometheus targets")
    return [
        {
            "job": str((target.get("labels") or {}).get("job")),
            "node": str((target.get("labels") or {}).get("node", "?")),
            "health": str(target.get("health")),
            "url": str(target.get("scrapeUrl")),
            "error": str(target.get("lastError") or ""),
            "last_scrape": str(target.get("lastScrape") or ""),
        }
        for target in found
        if isinstance(target, dict)
    ]


def describe_down(target: dict[str, str]) -> str:
    """A target Prometheus does not scrape successfully, as `job/node url: error` (or its health)."""
    return f"{target['job']}/{target['node']} {target['url']}: {target['error'] or target['health']}"
