"""The `api` scenario: `GET /api/v1/cluster/health` latency on a deployed lab, through a real `raydeploy api`.

The endpoint caches its answer for 5 s, so a client polling it mostly gets the cached answer. The
figures say both: every request (`api_health`), and only the requests that ran the checks
themselves (`api_health_uncached`: answers with age_s == 0).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator

import requests

from bench.labs import fresh_lab
from bench.measure import FULL_DEPLOY, RAYDEPLOY, REPO, BenchError, figure, timed

REQUESTS = 60
INTERVAL_S = 0.25


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(base: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            requests.get(f"{base}/healthz", timeout=2)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise BenchError(f"raydeploy api at {base} did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.2)


def poll_health(base: str, headers: dict[str, str], count: int) -> tuple[list[float], list[float]]:
    """COUNT health requests, INTERVAL_S apart: (every latency, the uncached ones), in milliseconds."""
    every, uncached = [], []
    with requests.Session() as session:
        for _ in range(count):
            started = time.perf_counter()
            response = session.get(f"{base}/api/v1/cluster/health", headers=headers, timeout=60)
            elapsed_ms = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            body = response.json()
            if body["overall_status"] != "HEALTHY":
                raise BenchError(f"the deployed lab is {body['overall_status']}: {body.get('problems')}")
            every.append(elapsed_ms)
            if body["age_s"] == 0.0:
                uncached.append(elapsed_ms)
            time.sleep(INTERVAL_S)
    return every, uncached


@contextlib.contextmanager
def deployed_api(name: str, workers: int, role: str, rate_limit: int) -> Iterator[tuple[str, str]]:
    """A fresh lab NAME, deployed, and `raydeploy api` over it with a token of ROLE and RATE_LIMIT requests a
    second; yields (base URL, token) once it answers, stops the server and removes the lab after."""
    with fresh_lab(name, workers) as lab:
        timed(FULL_DEPLOY, lab.env)
        env = {**os.environ, **lab.env}
        token = subprocess.run(
            [RAYDEPLOY, "api", "token", "create", "--name", "bench", "--role", role],
            cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [RAYDEPLOY, "api", "--port", str(port), "--rate-limit", str(rate_limit)], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base)
            yield base, token
        finally:
            server.terminate()
            server.wait(timeout=30)


def scenario_api(runs: int, workers: int) -> dict:
    """On one fresh deployed lab: --runs rounds of REQUESTS health requests through `raydeploy api`."""
    every, uncached = [], []
    with deployed_api("rdbench-api", workers, "viewer", 100000) as (base, token):
        for _ in range(max(runs, 1)):
            some, fresh = poll_health(base, {"Authorization": f"Bearer {token}"}, REQUESTS)
            every += some
            uncached += fresh
    return {"figures": {"api_health": figure(every, "ms"), "api_health_uncached": figure(uncached, "ms")}}
