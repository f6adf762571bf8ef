"""Run on the monitoring host: wait until Prometheus scrapes every wanted target, and every other
active target, successfully; exit 1 naming the missing ones after the timeout.

    python3 wait_prometheus_targets.py WANTED_JSON PORT TIMEOUT_S [SINCE_EPOCH_S]

WANTED_JSON is a list of [job, node label] pairs. With SINCE_EPOCH_S (after a reload), a target
counts only once scraped after that moment: a reload rediscovers every target from scratch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from deploys.scripts.polling import wait_until
from facts.prometheus_answers import TARGETS_PATH, prometheus_query, targets

PROMETHEUS = "prometheus"


def not_scraped(wanted: list[tuple[str, str]], found: list[dict[str, str]], since: str = "") -> list[str]:
    """Wanted (job, node) targets not scraped up (since SINCE, an ISO time), and every active target
    that is down: a restarted Ray node leaves its old ports in Ray's service discovery for a while."""
    up = {(t["job"], t["node"]) for t in found if t["health"] == "up" and t["last_scrape"][:19] >= since}
    missing = [f"{job} on {node}" for job, node in wanted if (job, node) not in up]
    missing += [f"{t['job']}/{t['node']} {t['url']} ({t['health']})" for t in found if t["health"] != "up"]
    return missing


def main(arguments: list[str]) -> int:
    wanted = [(job, node) for job, node in json.loads(arguments[0])]
    port, timeout_s = int(arguments[1]), float(arguments[2])
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(arguments[3]))) if len(arguments) > 3 else ""
    query = prometheus_query(PROMETHEUS, port, TARGETS_PATH)

    def missing_now() -> list[str]:
        try:
            found = targets(subprocess.run(query, shell=True, capture_output=True, text=True).stdout)
        except ValueError:
            found = []
        return not_scraped(wanted, found, since)

    return wait_until(missing_now, timeout_s, "Prometheus does not scrape")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
