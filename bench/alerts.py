"""A lost Ray node until a person is told: from `docker stop ray-worker` to Alertmanager's webhook received.

On one fresh deployed lab, with the generic webhook pointed at a receiver on this machine's
address in the lab's network (raydeploy/lab/alert_receiver.py). Target: under
alert_ray_node_lost_for + 30 s. Also timed: the worker started again until the resolved notice.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests

from bench.labs import Lab, fresh_lab
from bench.measure import FULL_DEPLOY, BenchError, figure, run
from raydeploy.lab.alert_receiver import AlertReceiver, gateway_address, is_notice

# RayNodeLost's `for:` as the bench sets it, and how often a group's changes (the resolved notice) go out.
NODE_LOST_FOR_S = 30
ALERT_DATA = {
    "alert_critical_receivers": '["webhook"]',
    "alert_ray_node_lost_for": f"{NODE_LOST_FOR_S}s",
    "alert_group_interval": "10s",
}
TARGET_S = NODE_LOST_FOR_S + 30


def scenario_alerts(runs: int, workers: int) -> dict:
    """On one fresh 1+WORKERS lab, deployed with the webhook receiver: RUNS times, stop a worker's Ray container
    until RayNodeLost reaches the receiver, then start it until the resolved notice does."""
    lost, resolved = [], []
    with fresh_lab("rdbench-alerts", workers) as lab:
        receiver = AlertReceiver(gateway_address(lab.name))
        try:
            deploy_with_receiver(lab, receiver)
            for index in range(runs):
                fired_s, back_s = lost_and_back(lab, receiver, workers)
                lost.append(fired_s)
                resolved.append(back_s)
                print(f"alerts run {index + 1}: lost -> webhook {fired_s:.1f} s, back -> resolved {back_s:.1f} s")
        finally:
            receiver.close()
    return {
        "figures": {"ray_node_lost_to_webhook": figure(lost), "ray_node_back_to_resolved_webhook": figure(resolved)},
        "settings": {**ALERT_DATA, "alert_group_wait": "10s (default)", "prometheus_scrape_interval": "5s (lab)"},
        "target_s": TARGET_S,
        "meets_target": max(lost) < TARGET_S,
    }


def deploy_with_receiver(lab: Lab, receiver: AlertReceiver) -> None:
    """The webhook URL into the lab's state directory (0600), then a full deploy routing critical alerts to it."""
    # The lab inventory's state_dir: <RAYDEPLOY_LAB_HOME>/<lab>.
    secrets = Path(lab.env["RAYDEPLOY_LAB_HOME"]) / lab.name / "secrets"
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = secrets / "alert-webhook-url"
    path.write_text(receiver.url("/bench") + "\n")
    path.chmod(0o600)
    data = [part for key, value in ALERT_DATA.items() for part in ("--data", f"{key}={value}")]
    run([*FULL_DEPLOY, *data], lab.env)


def lost_and_back(lab: Lab, receiver: AlertReceiver, workers: int) -> tuple[float, float]:
    """Seconds from the stop to the firing notice, and from the start to the resolved one."""
    wait_for_ray_series(lab, 1 + workers)
    stopped_at = time.time()
    lab.ssh("worker-1", "docker stop ray-worker")
    try:
        fired = receiver.wait_for(is_notice("RayNodeLost", "firing"), TARGET_S + 120, after=stopped_at)
    finally:
        lab.ssh("worker-1", "docker start ray-worker")
    started_at = time.time()
    back = receiver.wait_for(is_notice("RayNodeLost", "resolved"), 300, after=started_at)
    return fired.received_at - stopped_at, back.received_at - started_at


def wait_for_ray_series(lab: Lab, nodes: int, timeout_s: float = 180) -> None:
    """Prometheus has a ray_node_cpu_count series for each of NODES nodes (the cluster is whole again)."""
    url = f"{lab.status['urls']['prometheus']}/api/v1/query"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = requests.get(url, params={"query": "ray_node_cpu_count"}, timeout=5).json()["data"]["result"]
        except (requests.RequestException, KeyError, ValueError):
            found = []
        if len(found) == nodes:
            return
        time.sleep(2)
    raise BenchError(f"Prometheus did not see {nodes} Ray nodes within {timeout_s} s")
