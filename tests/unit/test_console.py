"""The web console without hosts: sessions, sign-in links, CSRF, roles, escaping, the Content-Security-Policy.

Each security promise has a test that fails when its check is taken out of the code (tried by hand,
see the README's "Web console" section): the CSRF comparison, the role check, autoescaping, the header.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from raydeploy.api.app import create_app
from raydeploy.api.console.access import COOKIE, CSP
from raydeploy.api.console.rendering import HERE
from raydeploy.api.console.sessions import Sessions
from raydeploy.api.tokens import TokenStore
from tests.conftest import BIN, REPO
from tests.unit.test_api import LOOPBACK_INVENTORY, free_port, recorded_approval

ROLES = ("viewer", "operator", "approver", "admin")
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def console(tmp_path):
    """The app over an inventory whose only host is a closed loopback port, a token per role, no session yet."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(LOOPBACK_INVENTORY.format(port=free_port(), grafana=False))
    app = create_app(str(inventory), tmp_path / "state")
    tokens = TokenStore(app.state.store)
    client = TestClient(app, raise_server_exceptions=False)
    client.issued = {role: tokens.create(f"user-{role}", role, "test")[1] for role in ROLES}
    client.store, client.inventory, client.state = app.state.store, inventory, tmp_path / "state"
    return client


def sign_in(client: TestClient, token: str) -> str:
    """Sign CLIENT in with TOKEN through the form; the session's CSRF token, read from a page."""
    form = client.get("/signin")
    pre = re.search(r'name="pre_sign_in" value="([^"]+)"', form.text)[1]
    answer = client.post("/signin", data={"token": token, "pre_sign_in": pre, "next": "/runs"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/runs", answer.text
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/runs").text)[1]


def events(client, name: str) -> list:
    return [event for event in client.store.audit.events() if event.event == name]


def valid_approval(client, checkpoint: str = "cleanup-existing") -> str:
    """An approval recorded as valid (as a grant records it), for revoking."""
    recorded_approval(client.store, "0123456789ab", checkpoint, approved_by="user-approver")
    return "0123456789ab"


# Sessions -----------------------------------------------------------------------------------------


def test_a_page_without_a_session_sends_the_browser_to_sign_in(console):
    answer = console.get("/runs", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin?next=/runs"
    assert console.get("/live/dashboard").status_code == 401  # a live part is refused, not redirected


def test_signing_in_with_a_token_makes_an_http_only_strict_session_stored_as_a_hash(console):
    sign_in(console, console.issued["operator"])
    cookie = next(c for c in console.cookies.jar if c.name == COOKIE)
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite").lower() == "strict"
    assert 8 * 3600 - 60 < cookie.expires - time.time() <= 8 * 3600
    dump = "\n".join(console.store.db.iterdump())
    assert cookie.value not in dump and console.issued["operator"] not in dump
    assert 'id="who">user-operator <span class="role">operator</span>' in console.get("/runs").text
    assert [e.actor for e in events(console, "console signed in")] == ["user-operator"]


def test_an_unknown_token_is_refused_and_counted_as_a_failed_authentication(console):
    form = console.get("/signin")
    pre = re.search(r'name="pre_sign_in" value="([^"]+)"', form.text)[1]
    answer = console.post("/signin", data={"token": "rdt_forged", "pre_sign_in": pre})
    assert answer.status_code == 401 and "unknown or revoked" in answer.text
    assert COOKIE not in console.cookies
    assert [e.details["reason"] for e in events(console, "api authentication failed")] == ["unknown or revoked token"]


def test_a_sign_in_form_posted_from_elsewhere_is_refused(console):
    """Another site can post the form, but not with this browser's SameSite=Strict pre-sign-in cookie."""
    for guess in ("guessed", "é"):
        answer = console.post("/signin", data={"token": console.issued["admin"], "pre_sign_in": guess})
        assert answer.status_code == 403 and "CSRF" in answer.text and COOKIE not in console.cookies


def test_revoking_the_token_ends_its_sessions_at_once(console):
    sign_in(console, console.issued["viewer"])
    assert console.get("/runs", follow_redirects=False).status_code == 200
    TokenStore(console.store).revoke("user-viewer", "test")
    assert console.get("/runs", follow_redirects=False).status_code == 303


def test_signing_out_ends_the_session_on_the_server(console):
    csrf = sign_in(console, console.issued["viewer"])
    cookie = console.cookies[COOKIE]
    assert console.post("/signout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    console.cookies.set(COOKIE, cookie)  # a copy of the cookie kept elsewhere is worth nothing now
    assert console.get("/runs", follow_redirects=False).status_code == 303
    assert [e.actor for e in events(console, "console signed out")] == ["user-viewer"]


def test_a_session_expires(console):
    identity = TokenStore(console.store).identify(console.issued["viewer"])
    sessions = Sessions(console.store)
    lasting, ended = sessions.open(identity, ttl_s=60), sessions.open(identity, ttl_s=0.01)
    time.sleep(0.05)
    assert sessions.find(lasting).identity == identity and sessions.find(ended) is None


def test_a_sign_in_link_from_the_cli_signs_in_once(console, tmp_path):
    made = subprocess.run(
        [str(BIN / "raydeploy"), "api", "token", "create", "--name", "dora", "--role", "approver", "--sign-in-link",
         "--state-dir", str(console.state), "--console-url", "http://127.0.0.1:8123/"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    token, link = made.stdout.split()
    assert token.startswith("rdt_") and link.startswith("http://127.0.0.1:8123/signin/link?code=")
    path = link.removeprefix("http://127.0.0.1:8123")
    shown = console.get(path)
    assert shown.status_code == 200 and "Sign in as dora" in shown.text and COOKIE not in console.cookies
    pre = re.search(r'name="pre_sign_in" value="([^"]+)"', shown.text)[1]
    code = path.split("code=")[1]
    used = console.post("/signin/link", data={"code": code, "pre_sign_in": pre}, follow_redirects=False)
    assert used.status_code == 303 and COOKIE in console.cookies
    assert "dora" in console.get("/runs").text
    console.cookies.clear()
    assert console.get(path).status_code == 401  # used up
    assert console.post("/signin/link", data={"code": code, "pre_sign_in": pre}).status_code in (401, 403)
    assert [e.target for e in events(console, "console sign-in link made")] == ["dora"]
    assert code not in "\n".join(console.store.db.iterdump())


# CSRF and roles -----------------------------------------------------------------------------------


def test_a_state_changing_request_without_the_sessions_csrf_token_is_refused_and_changes_nothing(console):
    sign_in(console, console.issued["approver"])
    approval = valid_approval(console)
    for form in ({}, {"csrf": "forged"}, {"csrf": "é"}):
        answer = console.post(
            "/approvals/cleanup-existing/revoke", data={**form, "approval_id": approval, "reason": "r"}
        )
        assert answer.status_code == 403 and "CSRF_FAILED" in answer.text, answer.text
        assert "reload the page" in answer.text  # what to do, in words
    assert console.store.approval(approval)["status"] == "valid"
    refused = events(console, "api authorisation refused")
    assert [(e.actor, e.details["why"]) for e in refused] == [("user-approver", "CSRF_FAILED")] * 3
    crowded = console.post("/approvals/cleanup-existing/revoke", content="&".join(f"f{n}=1" for n in range(60)))
    assert crowded.status_code == 422 and "at most 50 fields" in crowded.text


def test_the_csrf_token_of_the_session_lets_the_same_request_through(console):
    csrf = sign_in(console, console.issued["approver"])
    approval = valid_approval(console)
    answer = console.post(
        "/approvals/cleanup-existing/revoke",
        data={"csrf": csrf, "approval_id": approval, "reason": "plan changed"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/approvals/cleanup-existing?done=revoked"
    assert console.store.approval(approval)["status"] == "revoked"
    assert [(e.actor, e.details["reason"]) for e in events(console, "approval revoked")] == [
        ("user-approver", "plan changed")
    ]


@pytest.mark.parametrize(
    ("path", "form", "needs"),
    [
        ("/approvals/cleanup-existing/revoke", {"approval_id": "0123456789ab", "reason": "r"}, "approver"),
        ("/approvals/cleanup-existing/approve", {"reason": "r", "acknowledge_risks": "on"}, "approver"),
        ("/approvals/cleanup-existing/reject", {"reason": "r"}, "approver"),
        ("/run/prerequisites-check", {"force": "on"}, "operator"),
        ("/actions/remove-node/run", {"host": "worker-1"}, "operator"),
        ("/actions/destroy/run", {"purge_data": "on"}, "operator"),
        ("/actions/rollback/run", {}, "operator"),
        ("/actions/destroy/approve", {"reason": "r", "acknowledge_risks": "on"}, "approver"),
        ("/actions/remove-node/approve", {"host": "worker-1", "reason": "r"}, "approver"),
        ("/secrets/ray-auth-token", {}, "admin"),
    ],
)
def test_a_viewer_posting_directly_with_a_valid_session_is_refused_as_the_api_refuses(console, path, form, needs):
    csrf = sign_in(console, console.issued["viewer"])
    approval = valid_approval(console)
    answer = console.post(path, data={**form, "csrf": csrf})
    assert answer.status_code == 403 and f"this needs the {needs} role" in answer.text, answer.text
    assert "Ask an admin for a token" in answer.text
    assert console.store.approval(approval)["status"] == "valid" and console.store.runs() == []
    refused = events(console, "api authorisation refused")
    assert [(e.actor, e.details["needs"]) for e in refused] == [("user-viewer", needs)]
    assert events(console, "secret shown") == []


def test_a_viewer_is_refused_the_audit_page_and_sees_no_link_to_it(console):
    sign_in(console, console.issued["viewer"])
    assert 'href="/audit"' not in console.get("/runs").text
    assert console.get("/audit").status_code == 403


def test_an_admin_sees_the_verified_trail_and_can_search_it(console):
    sign_in(console, console.issued["admin"])
    page = console.get("/audit", params={"q": "user-admin"})
    assert page.status_code == 200 and 'href="/audit"' in page.text
    assert "the hash chain of all" in page.text and "INTACT" in page.text
    actors = re.findall(r'<td class="actor">([^<]*)</td>', page.text)
    assert actors == ["user-admin", "test"]  # newest first: its sign-in, then its token's creation
    assert "user-viewer" not in page.text  # the other tokens' events do not mention it


def test_the_ray_dashboards_token_is_shown_to_an_admin_and_audited(console):
    secrets = console.state / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "ray-auth-token").write_text("ray-token-value\n")
    csrf = sign_in(console, console.issued["admin"])
    dashboard = console.get("/")
    assert 'id="show-ray-token"' in dashboard.text
    shown = console.post("/secrets/ray-auth-token", data={"csrf": csrf})
    assert shown.status_code == 200 and '<pre class="secret" id="ray-token">ray-token-value</pre>' in shown.text
    assert [(e.actor, e.target, e.details["via"]) for e in events(console, "secret shown")] == [
        ("user-admin", "ray-auth-token", "console")
    ]


def test_secrets_show_refuses_a_pipe_unless_forced_and_audits_the_showing(console):
    (console.state / "secrets").mkdir(mode=0o700)
    (console.state / "secrets" / "ray-auth-token").write_text("ray-token-value\n")
    command = [str(BIN / "raydeploy"), "secrets", "show", "ray-auth-token", "-i", str(console.inventory),
               "--state-dir", str(console.state)]  # fmt: skip
    piped = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert piped.returncode == 2 and "not a terminal" in piped.stderr and "ray-token-value" not in piped.stdout
    forced = subprocess.run([*command, "--force"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert forced.returncode == 0 and forced.stdout == "ray-token-value\n", forced.stderr
    assert [e.details["via"] for e in events(console, "secret shown")] == ["cli --force (not a terminal)"]


# Escaping, headers, no scripts of anyone else ----------------------------------------------------


def hostile_run(client) -> str:
    """A run whose host name, operation, error and log line hold markup, as a hostile host could make them."""
    store = client.store
    store.start_run("run-x", HOSTILE, "raydeploy deploy", "inv", "fp", ["cleanup-existing"])
    store.start_checkpoint("run-x", "cleanup-existing")
    store.record_operations("run-x", "cleanup-existing", [(HOSTILE, "<b>op</b>", "failed", "<img src=x onerror=1>")])
    store.finish_checkpoint("run-x", "cleanup-existing", "failed", 0, [HOSTILE], "<i>boom</i>")
    store.log_path("run-x").write_text(f"line one\n{HOSTILE} said <img src=x onerror=alert(2)>\n")
    return "run-x"


def test_markup_from_hosts_and_logs_is_shown_as_text(console):
    sign_in(console, console.issued["viewer"])
    run_id = hostile_run(console)
    page = console.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;img src=x onerror=alert(2)&gt;" in page.text
    assert "&lt;b&gt;op&lt;/b&gt;" in page.text and "&lt;img src=x onerror=1&gt;" in page.text
    for page_text in (page.text, console.get("/runs").text, console.get("/").text):
        assert "<script>alert" not in page_text and "<img" not in page_text and "<b>op" not in page_text
        assert re.findall(r"<script[^>]*>", page_text) == ['<script src="/static/console.js" defer>']


def test_the_live_log_streams_through_the_session_and_resumes(console):
    sign_in(console, console.issued["viewer"])
    run_id = hostile_run(console)
    console.store.finish_run(run_id, "failed")
    whole = console.get(f"/runs/{run_id}/log")
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/event-stream")
    assert f"data: {HOSTILE} said" in whole.text and "event: end" in whole.text  # text/event-stream, never HTML
    resumed = console.get(f"/runs/{run_id}/log", headers={"Last-Event-ID": str(len(b"line one\n"))})
    assert "line one" not in resumed.text and f"data: {HOSTILE}" in resumed.text
    console.cookies.clear()
    assert console.get(f"/runs/{run_id}/log").status_code == 401


def test_every_console_answer_carries_the_strict_content_security_policy(console):
    assert "script-src 'self'" in CSP and "default-src 'self'" in CSP and "unsafe-inline" not in CSP
    answers = [console.get("/signin"), console.get("/static/console.js"), console.get("/static/console.css")]
    sign_in(console, console.issued["viewer"])
    answers += [console.get("/runs"), console.get("/runs/nope"), console.get("/audit"), console.get("/")]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP, answer.url
        assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 404, 403, 200]


def test_pages_load_nothing_from_elsewhere_and_hold_no_inline_script_or_style(console):
    sign_in(console, console.issued["admin"])
    for path in ("/", "/runs", "/audit", "/plan", "/signin"):
        text = console.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", text), path
        assert " style=" not in text and "<style" not in text and " on" + "click=" not in text, path
        for reference in re.findall(r'(?:src|href)="([^"]*)"', text):
            assert reference.startswith(("/", "#", "http://127.0.0.1:")), (path, reference)  # the inventory's links


def test_our_javascript_builds_no_html_from_data():
    script = (HERE / "static" / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def test_the_dashboard_says_in_words_what_it_cannot_read(console):
    sign_in(console, console.issued["viewer"])
    page = console.get("/")
    assert page.status_code == 200
    problems = re.findall(r'<p class="problem" role="alert">([^<]*)</p>', page.text)
    assert any("cannot be reached" in problem for problem in problems), problems
    assert json.dumps(problems).count("Traceback") == 0


def test_templates_never_switch_autoescaping_off():
    for template in (HERE / "templates").glob("*.html"):
        text = template.read_text()
        assert "|safe" not in text and "autoescape false" not in text and "Markup(" not in text, template.name


def test_the_console_files_ship_with_the_package():
    pyproject = (Path(REPO) / "pyproject.toml").read_text()
    assert '"raydeploy.api.console" = ["templates/*.html", "static/*"]' in pyproject


# Plans and approvals (the dry run replaced by a recorded plan: the lab test makes real ones) -------


@pytest.fixture
def planned(console, monkeypatch):
    """CONSOLE whose plans are one recorded plan: worker-1 removes a leftover; a host named with markup.
    planned.dry_runs counts the plans made; planned.changes is what they change (a test may change it)."""
    from raydeploy.api import context
    from tests.conftest import plan_of

    console.dry_runs = 0
    console.changes = {"worker-1": ["Remove leftover container ray_head"], HOSTILE: ["<b>op</b>"]}
    # remove-node is refused before planning for a host the inventory lacks: give it the worker removed here.
    worker = {"ssh_hostname": "127.0.0.1", "ssh_port": free_port(), "cluster_address": "127.0.0.2"}
    console.inventory.write_text(console.inventory.read_text() + f"workers = [('worker-1', {worker!r})]\n")

    def plan(inventory, checkpoint, state_dir, data=None):
        console.dry_runs += 1
        return plan_of(checkpoint.name, "fp", console.changes, notes={"worker-1": ["found ray_head, exited"]})

    monkeypatch.setattr(context, "make_plan", plan)
    return console


@pytest.mark.parametrize("role", ROLES)
def test_buttons_a_role_cannot_use_are_not_shown(planned, role):
    sign_in(planned, planned.issued[role])
    plan = planned.get("/plan", params={"checkpoint": "cleanup-existing", "wait": "1"})
    approval = planned.get("/approvals/cleanup-existing", params={"wait": "1"})
    removal = planned.get("/actions/remove-node", params={"host": "worker-1", "wait": "1"})
    destroy = planned.get("/live/actions/destroy", params={"purge_data": "on"})
    assert plan.status_code == approval.status_code == removal.status_code == destroy.status_code == 200
    assert ('class="primary run-button"' in plan.text) == (role != "viewer")
    for page in (approval.text, removal.text, destroy.text):
        assert ('id="approve-form"' in page) == (role in ("approver", "admin"))
    assert ('id="reject-form"' in approval.text) == (role in ("approver", "admin"))
    for page in (removal.text, destroy.text):
        assert ('id="run-form"' in page) == (role != "viewer")
    for page in (plan.text, approval.text, removal.text):
        assert "DESTRUCTIVE" in page and "Remove leftover container ray_head" in page and "found ray_head" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page and "<b>op" not in page
    assert ('<input type="hidden" name="purge_data" value="on">' in destroy.text) == (role != "viewer")


@pytest.mark.parametrize(
    ("page", "live", "shows"),
    [
        ("/plan?checkpoint=cleanup-existing", "/live/plan/cleanup-existing", 'class="primary run-button"'),
        ("/approvals/cleanup-existing", "/live/approvals/cleanup-existing", 'id="approve-form"'),
        ("/actions/remove-node?host=worker-1", "/live/actions/remove-node?host=worker-1", 'id="approve-form"'),
        ("/nodes/worker-1/removal", "/live/actions/remove-node?host=worker-1", 'id="approve-form"'),
        ("/actions/destroy?purge_data=on", "/live/actions/destroy?purge_data=on", 'id="approve-form"'),
    ],
)
def test_a_plan_page_answers_without_a_dry_run_and_the_fresh_plan_comes_behind_it(planned, page, live, shows):
    sign_in(planned, planned.issued["admin"])
    first = planned.get(page)
    assert first.status_code == 200 and planned.dry_runs == 0  # at once: nothing planned yet, a placeholder
    assert f'data-behind="{live.replace("&", "&amp;")}"' in first.text and shows not in first.text
    assert "Planning: a dry run against the hosts" in first.text and "wait=1" in first.text
    fresh = planned.get(live)
    assert fresh.status_code == 200 and planned.dry_runs == 1 and shows in fresh.text
    assert "data-behind" not in fresh.text and "planned just now" in fresh.text
    again = planned.get(page)  # the newest plan, at once, with its age, and a fresh one still made behind it
    assert planned.dry_runs == 1 and shows in again.text and "data-behind" in again.text
    assert re.search(r"planned \d+ s ago; a fresh dry run is on its way", again.text)
    digest = re.search(r'data-digest="([0-9a-f]{16})"', fresh.text)[1]
    assert f'data-digest="{digest}"' in again.text  # the script keeps the page's part when the digests agree


def test_an_approval_binds_to_the_plan_its_approver_read_or_to_none(planned):
    csrf = sign_in(planned, planned.issued["approver"])
    read = planned.get("/live/approvals/cleanup-existing").text
    digest = re.search(r'name="plan_digest" value="([0-9a-f]{16})"', read)[1]
    planned.changes = {"worker-2": ["Remove leftover container ray_worker"]}  # the hosts changed meanwhile
    form = {"csrf": csrf, "reason": "CHG-1", "acknowledge_risks": "on", "plan_digest": digest}
    refused = planned.post("/approvals/cleanup-existing/approve", data=form)
    assert refused.status_code == 409 and "plan changed since it was read" in refused.text
    assert planned.store.approvals("cleanup-existing") == []
    api = planned.post(
        "/api/v1/approvals/cleanup-existing",
        json={"reason": "CHG-1", "acknowledge_risks": True, "plan_digest": digest},
        headers={"Authorization": f"Bearer {planned.issued['approver']}"},
    )
    assert api.status_code == 409 and api.json()["error"] == "PLAN_CHANGED"
    assert planned.store.approvals("cleanup-existing") == []
    current = re.search(
        r'name="plan_digest" value="([0-9a-f]{16})"', planned.get("/live/approvals/cleanup-existing").text
    )[1]
    granted = planned.post("/approvals/cleanup-existing/approve", data={**form, "plan_digest": current})
    assert granted.status_code == 200 and "Plan approved" in granted.text
    assert [a["plan_digest"] for a in planned.store.approvals("cleanup-existing")] == [current] != [digest]


def test_a_day_2_action_is_approved_and_started_from_its_page_with_its_arguments(planned):
    operator = sign_in(planned, planned.issued["operator"])
    asked = planned.post("/actions/destroy/run", data={"csrf": operator, "purge_data": "on"}, follow_redirects=False)
    assert asked.status_code == 303 and asked.headers["location"].startswith("/runs/")  # destroy's run plans itself
    planned.cookies.clear()
    approver = sign_in(planned, planned.issued["approver"])
    digest = re.search(r'data-digest="([0-9a-f]{16})"', planned.get("/live/actions/destroy?purge_data=on").text)[1]
    form = {"csrf": approver, "purge_data": "on", "reason": "CHG-7", "plan_digest": digest, "acknowledge_risks": "on"}
    granted = planned.post("/actions/destroy/approve", data=form, follow_redirects=False)
    assert granted.status_code == 303, granted.text
    assert granted.headers["location"] == "/actions/destroy?purge_data=on&done=approved"
    (approval,) = planned.store.approvals("destroy")
    assert approval["plan_digest"] == digest and approval["approved_by"] == "user-approver"
    page = planned.get(granted.headers["location"])
    assert "Plan approved." in page.text and "CHG-7" not in page.text and approval["id"] in page.text


def test_a_rollback_with_nothing_recorded_says_so_on_its_page(planned):
    sign_in(planned, planned.issued["operator"])
    page = planned.get("/actions/rollback")
    assert page.status_code == 200 and "no recorded spec differs from the inventory" in page.text
    assert "no run recorded a spec yet" in page.text and 'id="run-form"' not in page.text


def test_asking_for_an_approval_then_approving_as_the_session_whatever_the_form_says(planned):
    operator = sign_in(planned, planned.issued["operator"])
    asked = planned.post("/run/cleanup-existing", data={"csrf": operator, "force": "on"}, follow_redirects=False)
    assert asked.status_code == 303 and asked.headers["location"] == "/approvals/cleanup-existing?done=asked"
    page = planned.get(asked.headers["location"])
    assert "Approval requested; nothing was changed" in page.text
    assert re.search(r'id="asked-by">user-operator at ', page.text)
    planned.cookies.clear()
    approver = sign_in(planned, planned.issued["approver"])
    form = {"csrf": approver, "reason": "CHG-9", "ttl_minutes": "30", "approved_by": "mallory"}
    refused = planned.post("/approvals/cleanup-existing/approve", data=form)
    assert refused.status_code == 400 and "acknowledge-risks" in refused.text  # destructive: the box must be ticked
    granted = planned.post(
        "/approvals/cleanup-existing/approve", data={**form, "acknowledge_risks": "on"}, follow_redirects=False
    )
    assert granted.status_code == 303 and granted.headers["location"] == "/approvals/cleanup-existing?done=approved"
    (approval,) = planned.store.approvals("cleanup-existing")
    assert (approval["approved_by"], approval["reason"], approval["status"]) == ("user-approver", "CHG-9", "valid")
    assert approval["acknowledge_risks"] == 1 and "mallory" not in json.dumps(approval)
    page = planned.get("/approvals/cleanup-existing")
    assert re.search(r"<td>user-approver</td><td>CHG-9</td>", page.text)
    assert [e.actor for e in events(planned, "approval granted")] == ["user-approver"]


def test_the_dashboard_says_what_a_checkpoint_would_do_from_its_newest_plan(planned):
    sign_in(planned, planned.issued["viewer"])
    dashboard = planned.get("/").text
    assert "changes on" not in dashboard  # nothing planned yet: no dry run is made for the dashboard
    never = re.search(r"<tr><td>cleanup-existing.*?</tr>", dashboard, flags=re.S)[0]
    assert "never run" in never and "NOT_FOUND" not in never
    planned.get("/live/plan/cleanup-existing")
    row = re.search(r"<tr><td>cleanup-existing.*?</tr>", planned.get("/").text, flags=re.S)[0]
    assert re.search(
        r"changes on &lt;script&gt;alert\(1\)&lt;/script&gt;: 1, worker-1: 1 \(planned \d+ s ago, plan ", row
    )


def test_a_sign_in_links_code_never_reaches_the_access_log():
    import logging

    from raydeploy.api.console.signin import HideSignInCodes

    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/signin/link?code=s3cret-Code_1&x=1", "1.1", 200), None,
    )  # fmt: skip
    assert HideSignInCodes().filter(record) and record.getMessage() == (
        '127.0.0.1:1 - "GET /signin/link?code=...&x=1 HTTP/1.1" 200'
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_page_answers_each_role_in_words_never_a_server_error(planned, role):
    sign_in(planned, planned.issued[role])
    hostile_run(planned)
    expected = {
        "/": 200,
        "/plan": 200,
        "/plan?checkpoint=all": 200,
        "/approvals/cleanup-existing": 200,
        "/approvals/destroy": 404,  # an action is approved with its arguments, from the Nodes page
        "/approvals/warp-drive": 404,
        "/runs?status=failed&checkpoint=cleanup-existing&since=2026-01-01": 200,
        "/runs?since=yesterday": 400,
        "/runs/run-x": 200,
        "/audit": 200 if role == "admin" else 403,
        "/nodes/head": 200,  # its facts cannot be read over SSH: the page says so
        "/nodes/head?diagnose=true": 200,
        "/nodes/nowhere": 404,
        "/nodes/worker-1/removal": 200,
        "/live/nodes/head": 200,
        "/live/plan/cleanup-existing": 200,
        "/live/approvals/cleanup-existing": 200,
        "/live/approvals/destroy": 404,
        "/actions/rollback": 200,  # nothing recorded: the page says so
        "/actions/destroy?purge_data=on&forget_secrets=on": 200,
        "/actions/remove-node?host=worker-1&wait=1": 200,
        "/actions/warp-drive": 404,
        "/plan?checkpoint=warp-drive": 404,
    }
    for path, status in expected.items():
        answer = planned.get(path)
        assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
        assert "Traceback" not in answer.text, path
        assert "<h1>" in answer.text or (path.startswith("/live/") and status == 200), path  # a part, or a page
        if status >= 400:
            assert "What to do:" in answer.text, path


def test_the_dashboard_links_the_monitoring_services_the_inventory_deploys(console):
    sign_in(console, console.issued["viewer"])
    links = re.findall(
        r'<li><a href="([^"]+)" rel="noopener noreferrer" target="_blank">([^<]+)</a>', console.get("/").text
    )
    assert [label for _, label in links] == ["Ray dashboard", "Prometheus", "Alertmanager (silences)"]  # Grafana off
    assert all(url.startswith("http://127.0.0.1:") for url, _ in links), links
