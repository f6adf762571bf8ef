"""The `ui` scenario: the web console's pages on a deployed lab, through a real `raydeploy api`.

Per page, LOADS loads with a signed-in session: the time to the whole answer on loopback (the server's
time, the request's own cost on loopback included; target under 150 ms) and, in Debian's Chromium driven
by Playwright, the first contentful paint from the navigation's start (target under 1 s). The plan, approval
and node pages answer at once and load their slow part (a dry run, a host read over SSH) behind: the
parts' own routes (/live/...) get SLOW_LOADS loads, and in Chromium the time from the navigation's start
until the part is swapped in (`ui_behind_*`, SLOW_PAINTS times each; no target: it is the dry run's time).
"""

from __future__ import annotations

import re
import shutil
import time

import requests

from bench.api import deployed_api
from bench.measure import BenchError, figure

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
SLOW = ("live_plan_prerequisites", "live_approval_cleanup", "live_node_worker")  # a dry run or SSH each
# Pages whose slow part comes behind them: the element the page's script swaps in when it has come.
BEHIND = {"plan_prerequisites": "plan-prerequisites-check-live", "approval_cleanup": "approval-live",
          "node_worker": "node-facts"}  # fmt: skip


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
        "live_plan_prerequisites": "/live/plan/prerequisites-check",
        "live_approval_cleanup": "/live/approvals/cleanup-existing",
        "live_node_worker": "/live/nodes/worker-1",
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
    """PAINTS loads of each page in Chromium: first contentful paint after the navigation started, in ms; for a
    page with a part made behind it, also `behind_NAME`: ms from the navigation's start until it was swapped in."""
    from playwright.sync_api import sync_playwright

    found: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "raydeploy_session", "value": cookie, "url": base}])
        page = context.new_page()
        for name, path in paths.items():
            if name.startswith("live_"):
                continue  # a part, not a page
            found[name] = []
            for _ in range(SLOW_PAINTS if name in BEHIND else PAINTS):
                started = time.perf_counter()
                page.goto(f"{base}{path}", timeout=300_000)
                paint = page.evaluate(FIRST_PAINT)
                if paint < 0:
                    raise BenchError(f"{path}: Chromium reported no first contentful paint within 10 s")
                found[name].append(float(paint))
                if name in BEHIND:
                    page.wait_for_selector(f"#{BEHIND[name]}:not([data-behind])", timeout=300_000)
                    found.setdefault(f"behind_{name}", []).append((time.perf_counter() - started) * 1000)
        browser.close()
    return found


def scenario_ui(runs: int, workers: int) -> dict:
    """On one fresh deployed lab: every console page, LOADS times (server) and PAINTS times (Chromium)."""
    figures = {}
    with deployed_api("rdbench-ui", workers, "admin", 1000000) as (base, token):
        paths = pages(one_run(base, token))
        session = signed_in(base, token)
        for name, path in paths.items():
            loads = SLOW_LOADS if name in SLOW else LOADS
            figures[f"ui_server_{name}"] = figure(server_times(session, base, path, loads), "ms")
        for name, paints in first_paints(base, session.cookies["raydeploy_session"], paths).items():
            figures[f"ui_{name}" if name.startswith("behind_") else f"ui_first_paint_{name}"] = figure(paints, "ms")
    return {"figures": figures}
