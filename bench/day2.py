"""Day-2 scenarios: adding a worker to a running cluster, and a host's reboot until every node is back.

Each brings up (and takes down) its own fresh lab, deployed before anything is timed.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.labs import Lab, fresh_lab
from bench.measure import FULL_DEPLOY, RAYDEPLOY, BenchError, checkpoint_times, figure, run, timed_output
from bench.scenarios import WRAPPER_DEPLOY
from bench.upgrade import Probe, Sample


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
            head.append(reboot(lab, "head", expected))
            worker.append(reboot(lab, "worker-1", expected))
            print(f"reboot: head host {head[-1]:.1f} s, worker host {worker[-1]:.1f} s until every node is alive")
    return {"figures": {"head_host_reboot_to_alive": figure(head), "worker_host_reboot_to_alive": figure(worker)}}


def rejoined(sample: Sample, expected: int, address: str, since: float) -> bool:
    """Whether SAMPLE saw the cluster whole again after host ADDRESS restarted at SINCE: EXPECTED
    distinct addresses alive, ADDRESS's among them as a node started since (a node of the restarted
    host stays listed ALIVE until the GCS notices it is gone, and Redis brings it back with a head)."""
    return (
        sample.ray_version is not None
        and len(sample.addresses()) == expected
        and address in sample.addresses(started_since=since)
    )


def reboot(lab: Lab, host: str, expected: int, timeout_s: float = 600) -> float:
    """Restart lab host HOST's container; seconds until EXPECTED Ray nodes are alive, HOST's one
    started after the restart (read from the dashboard)."""
    token_file = f"{lab.env['RAYDEPLOY_LAB_HOME']}/{lab.name}/secrets/ray-auth-token"
    probe = Probe(lab.dashboard_url, Path(token_file).read_text().strip())
    address = next(row["cluster_address"] for row in lab.status["hosts"] if row["name"] == host)
    since, started = time.time(), time.monotonic()
    run(["docker", "restart", f"{lab.name}-{host}"], {})
    while time.monotonic() < started + timeout_s:
        if rejoined(probe.poll(), expected, address, since):
            return time.monotonic() - started
        time.sleep(1)
    raise BenchError(f"{expected} Ray nodes were not alive {timeout_s:.0f} s after restarting {lab.name}-{host}")
