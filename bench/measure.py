"""Taking wall times: run a command, time it, and summarise samples as one figure."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RAYDEPLOY = str(BIN / "raydeploy")
PYINFRA = str(BIN / "pyinfra")
FULL_DEPLOY = [PYINFRA, "-y", "inventories/lab.py", "deploys/ray.py"]
DRY_DEPLOY = [PYINFRA, "inventories/lab.py", "deploys/ray.py", "--dry"]
# `raydeploy deploy` prints one line per checkpoint: "NAME: done, N change(s) in X s".
CHECKPOINT_DONE = re.compile(r"^([a-z-]+): done, (\d+) change\(s\) in ([\d.]+) s$", re.MULTILINE)


class BenchError(RuntimeError):
    """A step of a scenario failed; the message names the command, the host where known, and the output."""


def machine() -> dict[str, str | int | float]:
    """The machine the figures were taken on, with its load when asked (other work skews them)."""
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count() or 0,
        "memory_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def figure(samples: list[float], unit: str = "s") -> dict:
    """Median, min, max and the number of runs of SAMPLES (rounded to 2 places)."""
    return {
        "median": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
        "runs": len(samples),
        "unit": unit,
        "samples": [round(sample, 2) for sample in samples],
    }


def run(args: list[str], env: dict[str, str], timeout_s: float | None = None) -> subprocess.CompletedProcess:
    """Run ARGS in the repository with ENV added; a non-zero exit raises BenchError with the output."""
    try:
        completed = subprocess.run(
            args,
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as expired:
        raise BenchError(f"{' '.join(args)} did not finish in {timeout_s:.0f} s") from expired
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr)[-4000:]
        raise BenchError(f"{' '.join(args)} failed (exit {completed.returncode}):\n{output}")
    return completed


def timed_output(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Wall time of ARGS and everything it printed."""
    started = time.monotonic()
    completed = run(args, env)
    return time.monotonic() - started, completed.stdout + completed.stderr


def timed(args: list[str], env: dict[str, str], expect_no_change: bool = False) -> float:
    """Wall time of ARGS; with EXPECT_NO_CHANGE, pyinfra's grand total must show no change."""
    elapsed, output = timed_output(args, env)
    if expect_no_change:
        total = re.search(r"Grand total\s+\S+\s+(\S+)", output)
        if not total or total.group(1) != "-":
            raise BenchError(f"{' '.join(args)} was to change nothing:\n{output[-4000:]}")
    return elapsed


def memory_available_gib() -> float:
    """MemAvailable of this machine now, in GiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def checkpoint_times(output: str) -> dict[str, float]:
    """Each checkpoint's execution time from `raydeploy deploy` output."""
    return {name: float(seconds) for name, _, seconds in CHECKPOINT_DONE.findall(output)}
