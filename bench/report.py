"""The bench's report: one table of figures against the issue's targets, and one JSON file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.measure import REPO

RESULTS = REPO / "bench" / "results"
# figure name -> (target as the issue states it, the largest median (or smallest, for the ratio) that meets it)
TARGETS: dict[str, tuple[str, float]] = {
    "full_deploy": ("< 180 s", 180.0),
    "noop_rerun": ("< 5 s", 5.0),
    "dry_run": ("< 5 s", 5.0),
    "validate_health_only": ("< 2 s", 2.0),
    "peer_over_ours_ratio": (">= 3x", 3.0),
    "api_health": ("< 300 ms", 300.0),
    "add_one_worker": ("< 30 s", 30.0),
    "add_one_worker_pyinfra": ("< 30 s", 30.0),
    "head_host_reboot_to_alive": ("< 60 s", 60.0),
    "upgrade_downtime": ("< 30 s", 30.0),
    "rollback_downtime": ("< 30 s", 30.0),
    # alert_ray_node_lost_for + 30 s, with the 30 s bench/alerts.py sets.
    "ray_node_lost_to_webhook": ("< 60 s", 60.0),
    "webhook_via_api": ("< 1000 ms", 1000.0),
    "webhook_in_process": ("< 1000 ms", 1000.0),
}
GROWTH_TARGET_PERCENT = 20.0


def meets(name: str, median: float) -> str:
    if name not in TARGETS:
        return ""
    _, limit = TARGETS[name]
    met = median >= limit if name == "peer_over_ours_ratio" else median < limit
    return "yes" if met else "NO"


def table(results: dict) -> str:
    """Every figure of every scenario, one line each, with its target where the issue sets one."""
    lines = [f"{'scenario':<9} {'figure':<42} {'median':>8} {'min':>8} {'max':>8} {'runs':>5}  target   met"]
    for scenario, result in results.items():
        # A scenario that failed in part still shows what it measured.
        if "error" in result:
            lines.append(f"{scenario:<9} FAILED: {result['error'].splitlines()[0]}")
        for name, value in result.get("figures", {}).items():
            target = TARGETS.get(name, ("", 0))[0]
            unit = value["unit"]
            lines.append(
                f"{scenario:<9} {name:<42} {value['median']:>7}{unit} {value['min']:>7}{unit} {value['max']:>7}{unit} "
                f"{value['runs']:>5}  {target:<8} {meets(name, value['median'])}"
            )
        for key, percent in result.get("growth_percent", {}).items():
            verdict = "yes" if percent < GROWTH_TARGET_PERCENT else "NO"
            lines.append(
                f"{scenario:<9} {key + ' growth, fewest to most workers':<42} {percent:>7}%  < 20%    {verdict}"
            )
    return "\n".join(lines)


def curve_table(curve: list[dict]) -> str:
    """The scale curve: one row per worker count, with a bar per median (one # per 0.5 s)."""
    lines = [f"{'workers':>7} {'no-op s':>8} {'dry s':>6}  no-op"]
    for point in curve:
        bar = "#" * round(point["noop_median_s"] / 0.5)
        lines.append(f"{point['workers']:>7} {point['noop_median_s']:>8} {point['dry_median_s']:>6}  {bar}")
    return "\n".join(lines)


def write(report: dict, output: Path | None, label: str) -> Path:
    """Write REPORT as JSON to OUTPUT (default bench/results/LABEL-TIME.json); return the path."""
    path = output or RESULTS / f"{label}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
