"""The `ui` scenario: the web console's pages on a deployed lab, through a real `raydeploy api`.

Per page, LOADS loads with a signed-in session: the time to the whole answer on loopback (the server's
time, the request's own cost on loopback included; target under 150 ms) and, in Debian's Chromium driven
by Playwright, the first contentful paint from the navigation's start (target under 1 s). The pages that
make a dry run (a plan, an approval) or read a host over SSH (a node) take seconds by design: they get
SLOW_LOADS loads and SLOW_PAINTS paints, and their figures say so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import requests

from bench.api import free_port, wait_until_up
from bench.labs import fresh_lab
from bench.measure import FULL_DEPLOY, RAYDEPLOY, REPO, BenchError, figure, timed

LOADS, SLOW_LOADS = 50, 5
PAINTS, SLOW_PAINTS = 10, 3
# The first contentful paint after the navigation's start, in ms (-1 when none comes within 10 s).
FIRST_PAINT = """new Promise(done => {
  const started = performance.now();
  const find = () => {
    const entry = performance.getEntriesByName("first-contentful-paint")[0];
    if (entry) { done(entry.startTime); } else if (performance.now() - started > 10000) { done(-1); }
    else { setTimeout(find, 20); }
  };
  find();
})"""
SLOW = ("plan_prerequisites", "approval_cleanup", "node_worker")


def pages(run_id: str) -> dict[str, str]:
    """Each page of the console (the plan and approval pages make a dry run; the node page reads the host)."""
    return {
        "dashboard": "/",
        "dashboard_live": "/live/dashboard",
        "plan_picker": "/plan",
        "plan_prerequisites": "/plan?checkpoint=prerequisites-check",
        "approval_cleanup": "/approvals/cleanup-existing",
        "runs": "/runs",
        "run": f"/runs/{run_id}",
        "audit": "/audit",
        "node_worker": "/nodes/worker-1",
    }


def signed_in(base: str, token: str) -> requests.Session:
    """A session signed in to the console with TOKEN, through the sign-in form."""
    session = requests.Session()
    form = session.get(f"{base}/signin", timeout=30)
    pre = re.search(r'name="pre_sign_in" value="([^"]+)"', form.text)[1]
    answer = session.post(f"{base}/signin", data={"token": token, "pre_sign_in": pre}, timeout=30)
    if answer.status_code != 200 or "raydeploy_session" not in session.cookies:
        raise BenchError(f"signing in to the console failed: {answer.status_code} {answer.text[:300]}")
    return session


def one_run(base: str, token: str) -> str:
    """prerequisites-check run through the API, to its end: its id (the run page needs one)."""
    headers = {"Authorization": f"Bearer {token}"}
    started = requests.post(f"{base}/api/v1/checkpoints/prerequisites-check", json={}, headers=headers, timeout=120)
    if started.status_code != 202:
        raise BenchError(f"prerequisites-check did not start: {started.status_code} {started.text[:300]}")
    run_id = started.json()["execution_id"]
    deadline = time.monotonic() + 600
    while requests.get(f"{base}/api/v1/runs/{run_id}", headers=headers, timeout=30).json()["status"] == "running":
        if time.monotonic() > deadline:
            raise BenchError(f"run {run_id} did not end within 600 s")
        time.sleep(1)
    return run_id


def server_times(session: requests.Session, base: str, path: str, loads: int) -> list[float]:
    """LOADS loads of PATH: milliseconds to the whole answer."""
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        answer = session.get(f"{base}{path}", timeout=300)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise BenchError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
    return times


def first_paints(base: str, cookie: str, paths: dict[str, str]) -> dict[str, list[float]]:
    """PAINTS loads of each page in Chromium: first contentful paint after the navigation started, in ms."""
    from playwright.sync_api import sync_playwright

    found: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "raydeploy_session", "value": cookie, "url": base}])
        page = context.new_page()
        for name, path in paths.items():
            found[name] = []
            for _ in range(SLOW_PAINTS if name in SLOW else PAINTS):
                page.goto(f"{base}{path}", timeout=300_000)
                paint = page.evaluate(FIRST_PAINT)
                if paint < 0:
                    raise BenchError(f"{path}: Chromium reported no first contentful paint within 10 s")
                found[name].append(float(paint))
        browser.close()
    return found


def scenario_ui(runs: int, workers: int) -> dict:
    """On one fresh deployed lab: every console page, LOADS times (server) and PAINTS times (Chromium)."""
    with fresh_lab("rdbench-ui", workers) as lab:
        timed(FULL_DEPLOY, lab.env)
        env = {**os.environ, **lab.env}
        token = subprocess.run(
            [RAYDEPLOY, "api", "token", "create", "--name", "bench", "--role", "admin"],
            cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [RAYDEPLOY, "api", "--port", str(port), "--rate-limit", "1000000"], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        figures = {}
        try:
            wait_until_up(base)
            paths = pages(one_run(base, token))
            session = signed_in(base, token)
            for name, path in paths.items():
                loads = SLOW_LOADS if name in SLOW else LOADS
                figures[f"ui_server_{name}"] = figure(server_times(session, base, path, loads), "ms")
            for name, paints in first_paints(base, session.cookies["raydeploy_session"], paths).items():
                figures[f"ui_first_paint_{name}"] = figure(paints, "ms")
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"figures": figures}
