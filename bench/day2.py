"""Day-2 scenarios: adding a worker to a running cluster, and a host's reboot until every node is back.

Each brings up (and takes down) its own fresh lab, deployed before anything is timed.
"""

from __future__ import annotations

import time
from pathlib import Path

import requests

from bench.labs import Lab, fresh_lab
from bench.measure import FULL_DEPLOY, RAYDEPLOY, BenchError, checkpoint_times, figure, run, timed_output
from bench.scenarios import WRAPPER_DEPLOY


def scenario_grow(runs: int, workers: int) -> dict:
    """On RUNS fresh 1+WORKERS labs: grow by one worker and time plain `pyinfra ... deploys/ray.py`, then
    grow by one more and time `raydeploy deploy --auto-approve` (which also plans, approves, records
    and runs final-validation's Ray job). Each new host has Docker and the images beforehand, not
    counted: "beyond pulling its images"."""
    plain, wrapper, phases = [], [], []
    for index in range(runs):
        with fresh_lab(f"rdbench-grow-{index}", workers) as lab:
            run(WRAPPER_DEPLOY, lab.env)
            plain.append(grown(lab, workers + 1, FULL_DEPLOY))
            wrapper.append(grown(lab, workers + 2, WRAPPER_DEPLOY, phases))
            print(f"grow run {index + 1}: pyinfra {plain[-1]:.1f} s, raydeploy deploy {wrapper[-1]:.1f} s")
    figures = {"add_one_worker_pyinfra": figure(plain), "add_one_worker": figure(wrapper)}
    for name in sorted({name for times in phases for name in times}):
        figures[f"add_one_worker {name}"] = figure([times[name] for times in phases if name in times])
    return {"figures": figures}


def grown(lab: Lab, workers: int, command: list[str], phases: list | None = None) -> float:
    """Grow LAB to WORKERS workers, give the new host Docker and the images, and time COMMAND (with
    PHASES: keep the wrapper's time per checkpoint)."""
    run([RAYDEPLOY, "lab", "up", "--workers", str(workers)], lab.env)
    prepare_new_host(lab, f"worker-{workers}")
    elapsed, output = timed_output(command, lab.env)
    if phases is not None:
        phases.append(checkpoint_times(output))
    return elapsed


def prepare_new_host(lab: Lab, name: str) -> None:
    """Docker on NAME and every image its containers run (what the issue's target leaves out)."""
    install = [*WRAPPER_DEPLOY, "--only", "docker-installation", "--limit", name]
    run(install, lab.env)
    for component in ("ray-head", "node-exporter"):
        image = lab.ssh("head", f"docker ps --format '{{{{.Image}}}}' --filter label=raydeploy.component={component}")
        lab.ssh(name, f"docker pull {image.strip()}")


def scenario_reboot(runs: int, workers: int) -> dict:
    """On one fresh deployed lab: restart the head host's container RUNS times, then a worker host's;
    each time the seconds until every Ray node is alive again."""
    head, worker = [], []
    with fresh_lab("rdbench-reboot", workers) as lab:
        run(WRAPPER_DEPLOY, lab.env)
        expected = 1 + workers
        for _ in range(runs):
            head.append(reboot(lab, f"{lab.name}-head", expected))
            worker.append(reboot(lab, f"{lab.name}-worker-1", expected))
            print(f"reboot: head host {head[-1]:.1f} s, worker host {worker[-1]:.1f} s until every node is alive")
    return {"figures": {"head_host_reboot_to_alive": figure(head), "worker_host_reboot_to_alive": figure(worker)}}


def reboot(lab: Lab, container: str, expected: int, timeout_s: float = 600) -> float:
    """Restart lab host CONTAINER; seconds until EXPECTED Ray nodes are alive (read from the dashboard)."""
    token_file = f"{lab.env['RAYDEPLOY_LAB_HOME']}/{lab.name}/secrets/ray-auth-token"
    token = Path(token_file).read_text().strip()
    started = time.monotonic()
    run(["docker", "restart", container], {})
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if alive(lab.dashboard_url, token) == expected:
            return time.monotonic() - started
        time.sleep(1)
    raise BenchError(f"{expected} Ray nodes were not alive {timeout_s:.0f} s after restarting {container}")


def alive(dashboard: str, token: str) -> int:
    try:
        answer = requests.get(
            f"{dashboard}/api/v0/nodes",
            params={"filter_keys": "state", "filter_predicates": "=", "filter_values": "ALIVE"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        return len(answer.json()["data"]["result"]["result"])
    except (requests.RequestException, ValueError, KeyError):
        return -1
