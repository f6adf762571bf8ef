"""Our own scenarios: `lab up`, the full deploy per checkpoint, re-runs, validation, and the scale curve.

Each returns {"figures": {NAME: figure}, ...} and brings up (and takes down) its own fresh labs.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

from bench.labs import fresh_lab
from bench.measure import (
    DRY_DEPLOY,
    FULL_DEPLOY,
    RAYDEPLOY,
    BenchError,
    checkpoint_times,
    figure,
    memory_available_gib,
    run,
    timed,
    timed_output,
)

WRAPPER_DEPLOY = [RAYDEPLOY, "deploy", "--auto-approve", "-i", "inventories/lab.py"]
SCALE_WORKERS = (1, 2, 4, 8)


def scenario_lab_up(runs: int, workers: int, cold: bool) -> dict:
    """Warm `lab up` (median of RUNS); with COLD, first one `lab up` with no lab image and no cache."""
    figures = {}
    if cold:
        figures["cold_lab_up"] = figure([cold_lab_up(workers)])
    with fresh_lab("rdbench-prime", workers):
        pass  # images and mirror storage in place for the warm runs
    warm = []
    for index in range(runs):
        with fresh_lab(f"rdbench-warm-{index}", workers) as lab:
            warm.append(lab.up_s)
    figures["warm_lab_up"] = figure(warm)
    return {"figures": figures}


def cold_lab_up(workers: int) -> float:
    """One `lab up` after removing every raydeploy-lab image, with an empty download cache."""
    images = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "raydeploy-lab/*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if images:
        subprocess.run(["docker", "rmi", "--force", *images], capture_output=True, check=True)
    cache = tempfile.mkdtemp(prefix="rdbench-cold-cache-")
    try:
        with fresh_lab("rdbench-cold", workers, {"RAYDEPLOY_CACHE_DIR": cache, "PIP_NO_CACHE_DIR": "1"}) as lab:
            return lab.up_s
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def scenario_deploy(runs: int, workers: int) -> dict:
    """On RUNS fresh labs: `raydeploy deploy --auto-approve` (total and per checkpoint), then pyinfra's
    no-op re-run and dry run of the full deploy."""
    full, noop, dry, wrapper_noop = [], [], [], []
    per_checkpoint: dict[str, list[float]] = {}
    for index in range(runs):
        with fresh_lab(f"rdbench-deploy-{index}", workers) as lab:
            elapsed, output = timed_output(WRAPPER_DEPLOY, lab.env)
            checkpoints = checkpoint_times(output)
            if "final-validation" not in checkpoints:
                raise BenchError(
                    f"`raydeploy deploy` on lab {lab.name} did not finish every checkpoint:\n{output[-4000:]}"
                )
            full.append(elapsed)
            for name, seconds in checkpoints.items():
                per_checkpoint.setdefault(name, []).append(seconds)
            noop.append(timed(FULL_DEPLOY, lab.env, expect_no_change=True))
            dry.append(timed(DRY_DEPLOY, lab.env))
            wrapper_noop.append(timed(WRAPPER_DEPLOY, lab.env))
        steps = ", ".join(f"{name} {seconds:.1f}" for name, seconds in checkpoints.items())
        print(
            f"deploy run {index + 1}: full {full[-1]:.1f} s ({steps}), no-op {noop[-1]:.1f} s, dry {dry[-1]:.1f} s, "
            f"raydeploy deploy again {wrapper_noop[-1]:.1f} s"
        )
    figures = {"full_deploy": figure(full)}
    figures |= {f"checkpoint {name}": figure(samples) for name, samples in per_checkpoint.items()}
    planning = [total - sum(samples[i] for samples in per_checkpoint.values()) for i, total in enumerate(full)]
    figures["plans, approvals and state (the rest)"] = figure(planning)
    figures |= {"noop_rerun": figure(noop), "dry_run": figure(dry), "wrapper_noop_rerun": figure(wrapper_noop)}
    return {"figures": figures}


def scenario_validate(runs: int, workers: int) -> dict:
    """On one fresh deployed lab: `validate --health-only` (at least 5 runs) and the full `validate`."""
    with fresh_lab("rdbench-validate", workers) as lab:
        timed(FULL_DEPLOY, lab.env)
        settled(lab.env)
        health = [timed([RAYDEPLOY, "validate", "--health-only"], lab.env) for _ in range(max(runs, 5))]
        full = [timed([RAYDEPLOY, "validate"], lab.env) for _ in range(runs)]
    return {"figures": {"validate_health_only": figure(health), "validate_full": figure(full)}}


def settled(env: dict[str, str], timeout_s: float = 120.0) -> None:
    """Wait (not counted) until `validate --health-only` passes: right after a deploy, Prometheus may not
    have scraped its targets yet, and they read `unknown`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            run([RAYDEPLOY, "validate", "--health-only"], env)
            return
        except BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def scenario_scale(runs: int, worker_counts: tuple[int, ...] = SCALE_WORKERS) -> dict:
    """For each worker count, a fresh lab fully deployed (not counted), then no-op re-runs and dry runs."""
    figures, curve = {}, []
    for workers in worker_counts:
        with fresh_lab(f"rdbench-scale-{workers}", workers) as lab:
            deploy_s = timed(FULL_DEPLOY, lab.env)
            available = memory_available_gib()
            noop = [timed(FULL_DEPLOY, lab.env, expect_no_change=True) for _ in range(runs)]
            dry = [timed(DRY_DEPLOY, lab.env) for _ in range(runs)]
        figures[f"noop_rerun {workers}w"] = figure(noop)
        figures[f"dry_run {workers}w"] = figure(dry)
        point = {
            "workers": workers,
            "full_deploy_s": round(deploy_s, 2),
            "noop_median_s": figures[f"noop_rerun {workers}w"]["median"],
            "dry_median_s": figures[f"dry_run {workers}w"]["median"],
            "memory_available_gib_when_deployed": available,
        }
        curve.append(point)
        print(
            f"scale {workers} worker(s): deploy {deploy_s:.1f} s, no-op {point['noop_median_s']} s, "
            f"dry {point['dry_median_s']} s, {available} GiB available",
            flush=True,
        )
    return {"figures": figures, "curve": curve, "growth_percent": growth(curve)}


def growth(curve: list[dict]) -> dict[str, float]:
    """How much the no-op and dry run medians grow from the fewest to the most workers, in %."""
    first, last = curve[0], curve[-1]
    return {
        key: round((last[f"{key}_median_s"] / first[f"{key}_median_s"] - 1) * 100, 1)
        for key in ("noop", "dry")
        if first[f"{key}_median_s"] > 0
    }


DESTROY = [RAYDEPLOY, "destroy", "--auto-approve", "-i", "inventories/lab.py"]


def scenario_destroy(runs: int, workers: int) -> dict:
    """On RUNS fresh labs, each fully deployed (not counted): `raydeploy destroy --auto-approve` (its plan,
    approval and teardown of every host), then the same again, which finds nothing left to remove."""
    destroy, again = [], []
    for index in range(runs):
        with fresh_lab(f"rdbench-destroy-{index}", workers) as lab:
            timed(FULL_DEPLOY, lab.env)
            destroy.append(timed(DESTROY, lab.env))
            again.append(timed(DESTROY, lab.env))
        print(f"destroy run {index + 1}: {destroy[-1]:.1f} s, again (nothing left) {again[-1]:.1f} s")
    return {"figures": {"destroy": figure(destroy), "destroy_again_nothing_left": figure(again)}}
