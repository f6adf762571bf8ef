"""The web console in a real browser (Debian's Chromium driven by Playwright) on a deployed lab, through a
real `raydeploy api` on loopback. Screenshots of every page go to .ci/screenshots/ (CI keeps them).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO
from tests.lab.conftest import DeployedCluster
from tests.lab.test_api import serve

SCREENSHOTS = REPO / ".ci" / "screenshots"
PEOPLE = {"olga": "operator", "alex": "approver", "vic": "viewer", "ada": "admin"}
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}
LEFTOVER = "docker run -d --name ray_head --entrypoint sleep rayproject/ray:2.60.0-py311-cpu infinity"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium (apt's `chromium`), headless; root needs --no-sandbox."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "no chromium on PATH: scripts/setup installs Debian's chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def console(deployed: DeployedCluster, tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    """`raydeploy api` over the deployed lab, a token per person in PEOPLE; yields (base URL, {name: token})."""
    deployed.wait_until_settled()
    with serve(deployed, tmp_path, PEOPLE) as (base, headers):
        yield base, {name: value["Authorization"].split()[1] for name, value in headers.items()}


def person(browser, base: str, token: str, viewport: dict = WIDE, screenshot_sign_in: bool = False):
    """A browser context of its own (its own cookies), signed in with TOKEN through the form; its page."""
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/signin")
    if screenshot_sign_in:
        shot(page, "signin")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return page


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def lines_arrive(log, count: int, timeout_s: float) -> None:
    """Wait until the log element holds more than COUNT lines, read from Python: the console's CSP forbids the
    string evaluation Playwright's wait_for_function would use (it refused it: the policy holds)."""
    deadline = time.monotonic() + timeout_s
    while len(log.inner_text().splitlines()) <= count:
        assert time.monotonic() < deadline, f"the live log did not reach {count} lines in {timeout_s} s"
        time.sleep(0.5)


def fresh(page, part: str) -> None:
    """Wait until the page's PART (made behind it: a dry run, up to a couple of minutes on two busy cores, or a
    host read over SSH) has come from the server and been swapped in by the page's script."""
    page.wait_for_selector(f"#{part}:not([data-behind])", timeout=180_000)


def run_from_plan(page, base: str, checkpoint: str) -> None:
    """Open CHECKPOINT's plan, wait for the fresh one, and press its run button."""
    page.goto(f"{base}/plan?checkpoint={checkpoint}")
    fresh(page, f"plan-{checkpoint}-live")
    plan = page.locator(f"#plan-{checkpoint}")
    plan.locator("input[name=force]").check()
    with page.expect_navigation(timeout=180_000):
        plan.locator(".run-button").click()


def an_admin_reads_both_names_in_the_audit(browser, base: str, token: str) -> None:
    """The audit page (verified) names the operator and the approver; the node page reads worker-1 over SSH."""
    ada = person(browser, base, token)
    ada.goto(f"{base}/audit")
    assert "INTACT" in ada.locator("#verification").inner_text()
    actors = set(ada.locator("#audit td.actor").all_inner_texts())
    assert {"olga", "alex"} <= actors, actors
    shot(ada, "audit")
    ada.goto(f"{base}/nodes/worker-1")
    fresh(ada, "node-facts")
    assert "ray-worker" in ada.locator("#containers").inner_text()
    shot(ada, "node")
    ada.goto(f"{base}/nodes/worker-1/removal")  # remove-node's plan: nothing changes
    fresh(ada, "action-live")
    assert "worker-1" in ada.locator(".plan").inner_text()
    shot(ada, "removal")
    ada.goto(f"{base}/actions/destroy")  # destroy's plan, never run here
    fresh(ada, "action-live")
    assert "ray-head" in ada.locator(".plan").inner_text() and ada.locator("#approve-form").count() == 1
    shot(ada, "destroy")


def test_an_operator_plans_an_approver_approves_and_the_operator_watches_the_run(browser, console, deployed):
    base, tokens = console
    worker = deployed.lab.host("worker-1")
    worker.check_output(LEFTOVER)
    try:
        olga = person(browser, base, tokens["olga"])
        olga.wait_for_selector("#overall-status:has-text('HEALTHY')", timeout=30_000)
        assert olga.locator("#nodes tbody tr").count() == 3
        assert olga.locator("#nodes tbody tr:has-text('ONLINE')").count() == 3
        shot(olga, "dashboard")
        olga.set_viewport_size(PHONE)
        shot(olga, "dashboard-phone")
        assert olga.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1  # no sideways page
        olga.set_viewport_size(WIDE)

        olga.goto(f"{base}/plan?checkpoint=cleanup-existing")
        assert olga.locator("#plan-cleanup-existing-live[data-behind]").count() == 1  # the page came before its plan
        fresh(olga, "plan-cleanup-existing-live")
        plan = olga.locator("#plan-cleanup-existing")
        assert "DESTRUCTIVE" in plan.inner_text() and "needs approval" in plan.inner_text()
        changing = plan.locator(".host:has(.operations) h4").all_inner_texts()
        assert any(text.startswith("worker-1") for text in changing), changing
        digest = plan.locator(".digest").inner_text()
        shot(olga, "plan")
        run_from_plan(olga, base, "cleanup-existing")
        assert olga.url == f"{base}/approvals/cleanup-existing?done=asked"
        assert "olga" in olga.locator("#asked-by").inner_text() and olga.locator("#approve-form").count() == 0

        alex = person(browser, base, tokens["alex"])
        alex.goto(f"{base}/approvals/cleanup-existing")
        fresh(alex, "approval-live")
        assert alex.locator("#plan-digest").inner_text() == digest
        assert "worker-1" in alex.locator(".plan").inner_text()
        alex.fill("#reason", "CHG-42 leftover Ray container on worker-1")
        alex.check("#acknowledge")
        shot(alex, "approval")
        with alex.expect_navigation(timeout=180_000):
            alex.click("#approve")
        assert alex.url == f"{base}/approvals/cleanup-existing?done=approved"
        assert alex.locator("#approvals tbody tr:has-text('alex'):has-text('valid')").count() == 1

        run_from_plan(olga, base, "cleanup-existing")
        assert re.fullmatch(rf"{base}/runs/[0-9]{{8}}T[0-9]{{6}}Z-[0-9a-f]{{6}}", olga.url), olga.url
        assert olga.locator("#log").get_attribute("data-status") == "running"  # the page opened on the live run
        lines_arrive(olga.locator("#log"), 3, timeout_s=120)
        # Only the script's handler of the stream's `end` event writes this: the log was followed live.
        olga.wait_for_selector("#log-state:has-text('The run ended: succeeded')", timeout=600_000)
        olga.wait_for_selector("#run-status:has-text('succeeded')", timeout=60_000)
        olga.wait_for_selector("#approval-used:has-text('alex')", timeout=30_000)  # the page came back with results
        assert olga.locator("#started-by").inner_text() == "olga"
        shot(olga, "run")
        olga.goto(f"{base}/runs")
        assert olga.locator("#runs tbody tr:has-text('succeeded')").count() >= 1
        shot(olga, "runs")
        assert "ray_head" not in worker.check_output("docker ps -a --format '{{.Names}}'").split()
        an_admin_reads_both_names_in_the_audit(browser, base, tokens["ada"])
    finally:
        worker.run("docker rm -f ray_head")


def test_a_viewer_sees_no_action_buttons_and_is_refused_when_posting_directly(browser, console):
    base, tokens = console
    vic = person(browser, base, tokens["vic"], screenshot_sign_in=True)
    assert vic.locator("#show-ray-token").count() == 0 and vic.locator("a[href='/audit']").count() == 0
    vic.goto(f"{base}/approvals/cleanup-existing")
    fresh(vic, "approval-live")
    assert vic.locator("#plan-digest").count() == 1  # the plan is shown, its forms are not
    assert vic.locator("#approve-form").count() == 0 and vic.locator("#reject-form").count() == 0
    vic.goto(f"{base}/plan?checkpoint=cleanup-existing")
    fresh(vic, "plan-cleanup-existing-live")
    assert vic.locator("#plan-cleanup-existing .digest").count() == 1 and vic.locator(".run-button").count() == 0
    shot(vic, "viewer-plan")
    csrf = vic.locator("input[name=csrf]").first.get_attribute("value")
    for path, form in (
        ("/approvals/cleanup-existing/approve", {"reason": "mine", "acknowledge_risks": "on"}),
        ("/run/cleanup-existing", {"force": "on"}),
    ):
        answer = vic.request.post(f"{base}{path}", form={**form, "csrf": csrf})
        assert answer.status == 403 and "needs the" in answer.text(), (path, answer.status)
    vic.goto(f"{base}/audit")
    assert "403" in vic.locator("h1").inner_text()
    shot(vic, "refused")


def test_a_stopped_worker_shows_as_degraded_on_the_open_dashboard_within_10_s(browser, console, deployed):
    base, tokens = console
    vic = person(browser, base, tokens["vic"])
    vic.wait_for_selector("#overall-status:has-text('HEALTHY')", timeout=30_000)
    vic.evaluate("window.notReloaded = true")
    worker = deployed.lab.host("worker-2")
    worker.check_output("docker stop ray-worker")
    stopped = time.monotonic()
    try:
        vic.wait_for_selector("#overall-status:has-text('DEGRADED')", timeout=30_000)
        seen_after = time.monotonic() - stopped
        assert vic.evaluate("window.notReloaded") is True  # the live part changed, the page was not loaded again
        shot(vic, "dashboard-degraded")
    finally:
        worker.check_output("docker start ray-worker")
    print(f"DEGRADED shown {seen_after:.1f} s after the worker stopped")
    assert seen_after < 10, seen_after
    deployed.wait_until_settled()


def test_an_admin_gets_the_ray_token_from_the_console_and_signs_in_to_the_ray_dashboard(browser, console, deployed):
    base, tokens = console
    ada = person(browser, base, tokens["ada"])
    ada.click("#show-ray-token")
    assert ada.locator("#ray-token").inner_text().strip() == deployed.token
    shot(ada, "ray-token")
    dashboard = ada.context.new_page()
    dashboard.goto(deployed.dashboard, timeout=60_000)
    dialog = dashboard.get_by_role("dialog")
    dialog.wait_for(timeout=60_000)
    assert "token" in dialog.inner_text().lower()
    dialog.locator("input").first.fill(deployed.token)
    dialog.get_by_role("button", name="Submit", exact=True).click()  # Ray's TokenAuthenticationDialog
    dialog.wait_for(state="hidden", timeout=60_000)
    dashboard.wait_for_load_state("networkidle", timeout=60_000)
    shot(dashboard, "ray-dashboard-signed-in")


def requests_log(base: str, token: str, run_id: str) -> list[str]:
    """The whole log of the ended run RUN_ID, line by line, as the API streams it from the start."""
    import requests

    answer = requests.get(
        f"{base}/api/v1/runs/{run_id}/log", headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=120
    )
    return [data for event, _id, data in log_events(answer) if event == "log"]


def log_events(answer) -> Iterator[tuple[str, str, str]]:
    """(event, id, data) of each server-sent event of the streaming response ANSWER, as they arrive."""
    event, event_id, data = "message", "", []
    for line in answer.iter_lines(decode_unicode=True):
        if line == "":
            if data:
                yield event, event_id, "\n".join(data)
            event, event_id, data = "message", "", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def test_the_live_log_resumes_after_a_dropped_connection_with_no_line_lost_or_repeated(console, deployed):
    """What the browser's EventSource does when its connection drops: it reconnects with the Last-Event-ID of
    the last line it had. Here by hand, on a real run, through the console's session."""
    from bench.ui import signed_in

    base, tokens = console
    session = signed_in(base, tokens["olga"])
    started = session.post(
        f"{base}/api/v1/checkpoints/final-validation",
        json={"force": True},
        headers={"Authorization": f"Bearer {tokens['olga']}"},
        timeout=120,
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["execution_id"]
    before: list[str] = []
    with session.get(f"{base}/runs/{run_id}/log", stream=True, timeout=300) as first:
        for event, event_id, data in log_events(first):
            assert event == "log", (event, data)  # the run is still going when the connection drops
            before.append(data)
            last_id = event_id
            if len(before) == 2:
                break  # the connection drops here
    after, end = [], None
    with session.get(
        f"{base}/runs/{run_id}/log", headers={"Last-Event-ID": last_id}, stream=True, timeout=600
    ) as again:
        for event, _event_id, data in log_events(again):
            if event == "end":
                end = data
                break
            after.append(data)
    assert end and '"succeeded"' in end, end
    whole = requests_log(base, tokens["olga"], run_id)
    assert before + after == whole and len(after) > 0
