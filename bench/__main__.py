"""`python -m bench SCENARIO`: time a scenario on its own fresh labs and write the figures as JSON.

Scenarios:
  lab-up   warm `raydeploy lab up` (images cached; median of --runs) and, with --cold, one cold
           `lab up` with no lab image, no mirror storage and no download cache.
  deploy   on --runs fresh labs (images already in the mirror): the full
           `pyinfra -y inventories/lab.py deploys/ray.py`, then a no-op re-run (which must change
           nothing) and a dry run (`--dry`) of the same.
  validate on one fresh deployed lab: `raydeploy validate --health-only` (median of --runs, at
           least 5) and the full `raydeploy validate` with the smoke job (median of --runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RAYDEPLOY = str(Path(sys.executable).parent / "raydeploy")
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
DEPLOY = [PYINFRA, "-y", "inventories/lab.py", "deploys/ray.py"]
RESULTS = REPO / "bench" / "results"


def machine() -> dict[str, str | int]:
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count() or 0,
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def figure(samples: list[float]) -> dict[str, float | int]:
    return {
        "median_s": round(statistics.median(samples), 2),
        "min_s": round(min(samples), 2),
        "max_s": round(max(samples), 2),
        "runs": len(samples),
        "samples_s": [round(sample, 2) for sample in samples],
    }


def timed(args: list[str], env: dict[str, str], expect_no_change: bool = False) -> float:
    started = time.monotonic()
    completed = subprocess.run(args, cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{completed.stdout}\n{completed.stderr}")
    if expect_no_change:
        total = re.search(r"Grand total\s+\S+\s+(\S+)", completed.stdout + completed.stderr)
        if not total or total.group(1) != "-":
            raise SystemExit(f"{' '.join(args)} was to change nothing:\n{completed.stdout}")
    return elapsed


def lab_up_once(name: str, workers: int, env: dict[str, str]) -> float:
    try:
        return timed([RAYDEPLOY, "lab", "up", "--name", name, "--workers", str(workers)], env)
    finally:
        subprocess.run([RAYDEPLOY, "lab", "down", "--name", name], env={**os.environ, **env}, capture_output=True)


def scenario_lab_up(args: argparse.Namespace) -> dict:
    home = tempfile.mkdtemp(prefix="raydeploy-bench-labs-")
    env = {"RAYDEPLOY_LAB_HOME": home}
    results: dict = {}
    if args.cold:
        cache = tempfile.mkdtemp(prefix="raydeploy-bench-cache-")
        images = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "raydeploy-lab/*"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "--force", *images], capture_output=True, check=True)
        cold_env = {**env, "RAYDEPLOY_CACHE_DIR": cache, "PIP_NO_CACHE_DIR": "1"}
        results["cold_lab_up"] = figure([lab_up_once("rdbench-cold", args.workers, cold_env)])
        shutil.rmtree(cache, ignore_errors=True)
    lab_up_once("rdbench-prime", args.workers, env)  # images and mirror storage in place for warm runs
    samples = [lab_up_once(f"rdbench-warm-{run}", args.workers, env) for run in range(args.runs)]
    results["warm_lab_up"] = figure(samples)
    shutil.rmtree(home, ignore_errors=True)
    return results


def scenario_deploy(args: argparse.Namespace) -> dict:
    home = tempfile.mkdtemp(prefix="raydeploy-bench-labs-")
    full, noop, dry = [], [], []
    for run in range(args.runs):
        env = {"RAYDEPLOY_LAB_HOME": home, "RAYDEPLOY_LAB": f"rdbench-deploy-{run}"}
        try:
            timed([RAYDEPLOY, "lab", "up", "--workers", str(args.workers)], env)
            full.append(timed(DEPLOY, env))
            noop.append(timed(DEPLOY, env, expect_no_change=True))
            dry.append(timed([PYINFRA, "inventories/lab.py", "deploys/ray.py", "--dry"], env))
            print(f"run {run + 1}: full {full[-1]:.1f} s, no-op {noop[-1]:.1f} s, dry {dry[-1]:.1f} s", flush=True)
        finally:
            subprocess.run([RAYDEPLOY, "lab", "down"], env={**os.environ, **env}, capture_output=True)
    shutil.rmtree(home, ignore_errors=True)
    return {"full_deploy": figure(full), "noop_rerun": figure(noop), "dry_run": figure(dry)}


def scenario_validate(args: argparse.Namespace) -> dict:
    home = tempfile.mkdtemp(prefix="raydeploy-bench-labs-")
    env = {"RAYDEPLOY_LAB_HOME": home, "RAYDEPLOY_LAB": "rdbench-validate"}
    try:
        timed([RAYDEPLOY, "lab", "up", "--workers", str(args.workers)], env)
        timed(DEPLOY, env)
        health = [timed([RAYDEPLOY, "validate", "--health-only"], env) for _ in range(max(args.runs, 5))]
        full = [timed([RAYDEPLOY, "validate"], env) for _ in range(args.runs)]
    finally:
        subprocess.run([RAYDEPLOY, "lab", "down"], env={**os.environ, **env}, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return {"validate_health_only": figure(health), "validate_full": figure(full)}


SCENARIOS = {"lab-up": scenario_lab_up, "deploy": scenario_deploy, "validate": scenario_validate}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--workers", type=int, default=2, help="workers per lab (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="warm runs to take the median of (default 3)")
    parser.add_argument("--cold", action="store_true", help="also time one cold run (removes the lab's images first)")
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/SCENARIO-TIME.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    figures = SCENARIOS[args.scenario](args)
    report = {"scenario": args.scenario, "workers": args.workers, "machine": machine(), "figures": figures}
    output = args.output or RESULTS / f"{args.scenario}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"{'figure':<22} {'median s':>9} {'min s':>7} {'max s':>7} {'runs':>5}")
    for key, value in figures.items():
        print(f"{key:<22} {value['median_s']:>9} {value['min_s']:>7} {value['max_s']:>7} {value['runs']:>5}")
    print(f"written to {output}")


if __name__ == "__main__":
    main()
