"""Fresh labs for the scenarios: each with its own home and state directory, always taken down."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench.measure import RAYDEPLOY, BenchError, run, timed

# Only labs with this prefix belong to the bench; nothing else is ever taken down by it.
LAB_PREFIX = "rdbench-"


@dataclass
class Lab:
    """A lab the bench brought up: its name, the environment that selects it, and `lab status --json`."""

    name: str
    env: dict[str, str]
    up_s: float
    status: dict

    @property
    def head_address(self) -> str:
        return next(host["cluster_address"] for host in self.status["hosts"] if host["role"] == "head")

    @property
    def worker_addresses(self) -> list[str]:
        return [host["cluster_address"] for host in self.status["hosts"] if host["role"] == "worker"]

    @property
    def host_names(self) -> list[str]:
        return [host["name"] for host in self.status["hosts"]]

    @property
    def ssh_key(self) -> str:
        return self.status["ssh"]["key"]

    @property
    def dashboard_url(self) -> str:
        return self.status["urls"]["ray-dashboard"]

    def ssh(self, host: str, command: str) -> str:
        """Run COMMAND on lab host HOST as root (the lab's own ssh_config, host keys checked)."""
        completed = subprocess.run(
            ["ssh", "-F", self.status["ssh"]["config"], host, command], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            raise BenchError(
                f"on lab host {host} ({self.name}): `{command}` failed (exit {completed.returncode}): "
                f"{completed.stderr.strip()[-2000:]}"
            )
        return completed.stdout


@contextmanager
def fresh_lab(
    name: str, workers: int, extra_env: dict[str, str] | None = None, ray_version: str | None = None
) -> Iterator[Lab]:
    """Bring lab NAME up with 1 head + WORKERS workers (at RAY_VERSION, else the lab's default) in a
    fresh home; take it down whatever happens."""
    if not name.startswith(LAB_PREFIX):
        raise ValueError(f"bench labs are named {LAB_PREFIX}*, not {name}")
    home = tempfile.mkdtemp(prefix=f"{name}-home-")
    env = {
        "RAYDEPLOY_LAB_HOME": home,
        "RAYDEPLOY_LAB": name,
        # The wrapper's state (runs, lock, audit) stays with this lab, never beside the shared inventory.
        "RAYDEPLOY_STATE_DIR": f"{home}/wrapper-state",
        **(extra_env or {}),
    }
    try:
        version = ["--ray-version", ray_version] if ray_version else []
        up_s = timed([RAYDEPLOY, "lab", "up", "--workers", str(workers), *version], env)
        status = json.loads(run([RAYDEPLOY, "lab", "status", "--json"], env).stdout)
        yield Lab(name=name, env=env, up_s=up_s, status=status)
    finally:
        subprocess.run([RAYDEPLOY, "lab", "down"], env={**os.environ, **env}, capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
