"""Webhooks through the REST API (admin only) and validation on a schedule: the real FastAPI app (TestClient,
with its lifespan: the deliverer and the schedule run as in `raydeploy api`), a real receiver on 127.0.0.1."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from raydeploy import webhook_delivery, webhook_outbox, webhooks
from raydeploy.api.app import create_app
from raydeploy.api.tokens import TokenStore
from raydeploy.cli import main
from raydeploy.state import StateStore
from raydeploy.validation_schedule import COMMAND, ScheduleError, Verdict, parse_every, validate_once
from tests.unit import webhook_receiver

receiver = webhook_receiver.receiver  # the fixture: a real HTTP receiver on 127.0.0.1


def serve(state, **options):
    app = create_app("inventories/lab.py", state, **options)
    tokens = TokenStore(app.state.store)
    issued = {role: tokens.create(f"user-{role}", role, "test")[1] for role in ("viewer", "operator", "admin")}
    return app, {role: {"Authorization": f"Bearer {token}"} for role, token in issued.items()}


@pytest.fixture
def api(tmp_path):
    app, auth = serve(tmp_path / "state")
    with TestClient(app, raise_server_exceptions=False) as client:
        client.roles, client.store = auth, app.state.store
        yield client
    webhook_delivery.stop_all()


def added(api, receiver, **body) -> dict:
    answer = api.post(
        "/api/v1/webhooks", headers=api.roles["admin"], json={"url": receiver.url, "allow_private": True, **body}
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_only_an_admin_manages_webhooks(api, receiver):
    for role in ("viewer", "operator"):
        for method, path in (("get", ""), ("post", ""), ("get", "/deliveries"), ("delete", "/0123456789ab")):
            answer = api.request(
                method.upper(), f"/api/v1/webhooks{path}", headers=api.roles[role], json={"url": receiver.url}
            )
            assert answer.status_code == 403, (role, method, path, answer.text)
    assert api.get("/api/v1/webhooks").status_code == 401


def test_an_endpoint_added_through_the_api_gets_events_and_its_secret_only_once(api, receiver):
    created = added(api, receiver)
    secret = created["secret"]
    listed = api.get("/api/v1/webhooks", headers=api.roles["admin"])
    assert [endpoint["id"] for endpoint in listed.json()] == [created["id"]]
    assert secret not in listed.text
    tested = api.post(f"/api/v1/webhooks/{created['id']}/test", headers=api.roles["admin"])
    assert tested.status_code == 202
    receiver.wait_for(1)  # the API's own deliverer sent it
    assert receiver.types() == ["webhook.test"] and receiver.documents()[0]["who"] == "user-admin"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = api.get("/api/v1/webhooks/deliveries", headers=api.roles["admin"])
        if log.json() and log.json()[0]["status"] == "delivered":
            break
        time.sleep(0.05)
    assert (log.json()[0]["status"], log.json()[0]["last_code"], log.json()[0]["attempts"]) == ("delivered", 204, 1)
    assert secret not in log.text and secret not in api.get("/api/v1/audit", headers=api.roles["admin"]).text
    removed = api.delete(f"/api/v1/webhooks/{created['id']}", headers=api.roles["admin"])
    assert removed.json() == {"id": created["id"], "cancelled": 0}
    assert api.get("/api/v1/webhooks", headers=api.roles["admin"]).json() == []


def test_bad_bodies_are_refused_naming_the_field(api, receiver):
    loopback = api.post("/api/v1/webhooks", headers=api.roles["admin"], json={"url": receiver.url})
    assert loopback.status_code == 400 and '"allow_private": true' in loopback.json()["message"]
    for body, field in (
        ({"url": receiver.url, "events": ["run.exploded"]}, "events"),
        ({"url": receiver.url, "format": "xml"}, "format"),
        ({"url": receiver.url, "secret": "mine"}, "secret"),
        ({}, "url"),
    ):
        answer = api.post("/api/v1/webhooks", headers=api.roles["admin"], json=body)
        assert answer.status_code == 422 and field in answer.text, answer.text
    assert api.delete("/api/v1/webhooks/0123456789ab", headers=api.roles["admin"]).status_code == 404
    assert api.get("/api/v1/webhooks", headers=api.roles["admin"]).json() == []


def test_what_was_queued_while_no_api_ran_is_delivered_when_it_starts(tmp_path, receiver, monkeypatch):
    state = tmp_path / "state"
    runner = CliRunner()
    added_by_cli = runner.invoke(main, ["webhooks", "add", receiver.url, "--allow-private", "--state-dir", str(state)])
    assert added_by_cli.exit_code == 0
    with monkeypatch.context() as patch:
        patch.setattr(webhook_outbox, "QUEUED_LISTENERS", [])  # queued by a process that died before sending
        store = StateStore(state)
        for number in range(3):
            store.audit.append("alice", "run started", f"run-{number}")
    assert receiver.received == []
    app, _ = serve(state)
    with TestClient(app):  # `raydeploy api` starting: its deliverer sends the queue
        receiver.wait_for(3)
    webhook_delivery.stop_all()
    assert [document["details"]["target"] for document in receiver.documents()] == ["run-0", "run-1", "run-2"]


# Validation on a schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), (" 10s ", 10)])
def test_schedule_durations(text, seconds):
    assert parse_every(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5", "5x", "m5", "-5m", "1.5h", "", "9s", "0m"])
def test_a_bad_schedule_is_refused_naming_the_flag(text):
    with pytest.raises(ScheduleError, match="--validate-every"):
        parse_every(text)


def test_raydeploy_api_refuses_a_bad_schedule_before_it_serves(tmp_path):
    result = CliRunner().invoke(main, ["api", "--validate-every", "5 minutes", "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "--validate-every '5 minutes': give a duration like 30s, 5m, 1h or 1d" in result.output


def test_each_scheduled_validation_is_a_run_and_a_change_of_verdict_is_an_event(api, receiver):
    added(api, receiver)
    verdicts = iter([True, True, False, False, True])
    rows = [("head", "ray-deployment: container", "pass", "")]
    for _ in range(5):
        validate_once(api.store, "inventories/lab.py", lambda: Verdict(next(verdicts), rows))
    runs = api.get("/api/v1/runs", headers=api.roles["viewer"]).json()
    assert [run["status"] for run in runs if run["command"] == COMMAND] == [
        "succeeded",
        "failed",
        "failed",
        "succeeded",
        "succeeded",
    ]
    receiver.wait_for(2)
    documents = receiver.documents()
    assert [d["type"] for d in documents] == ["validation.failing", "validation.passing"]
    assert (documents[0]["details"]["from"], documents[0]["details"]["to"]) == ("passing", "failing")
    one = api.get(f"/api/v1/runs/{runs[0]['id']}", headers=api.roles["viewer"]).json()
    assert one["validations"][0]["check_name"] == "ray-deployment: container"


def test_raydeploy_api_validates_on_its_schedule(tmp_path, receiver):
    """The real path: the app's schedule runs `raydeploy validate`'s checks on an inventory whose lab is not
    up (they cannot run: failing), records the run and sends validation.failing."""
    app, auth = serve(tmp_path / "state", validate_every=timedelta(seconds=30))
    store = app.state.store
    webhooks.add(store, receiver.url, "alice", allow_private=True)
    with TestClient(app) as client:
        receiver.wait_for(1, timeout=60)
        runs = client.get("/api/v1/runs", headers=auth["viewer"]).json()
    webhook_delivery.stop_all()
    assert runs[0]["command"] == COMMAND and runs[0]["status"] == "failed" and runs[0]["error"]
    assert receiver.types() == ["validation.failing"]
    assert store.audit.events()[-1].event in ("validation verdict changed", "webhook added")


def test_the_consoles_runs_pages_show_a_scheduled_validation(tmp_path):
    from tests.unit.test_console import sign_in

    app, _ = serve(tmp_path / "state")
    token = TokenStore(app.state.store).create("olga", "viewer", "test")[1]
    failing = [("worker-1", "ray-deployment: raylet alive", "fail", "raylet is not running")]
    validate_once(app.state.store, "inventories/lab.py", lambda: Verdict(False, failing))
    run_id = app.state.store.runs(1)[0]["id"]
    client = TestClient(app, raise_server_exceptions=False)
    sign_in(client, token)
    listed = client.get("/runs")
    assert listed.status_code == 200 and run_id in listed.text and COMMAND in listed.text
    one = client.get(f"/runs/{run_id}")
    assert one.status_code == 200 and "raylet is not running" in one.text


def test_deliveries_survive_a_restart_of_the_real_api(tmp_path, receiver, monkeypatch):
    """`raydeploy api` in its own process: stopped with deliveries still failing (the receiver down),
    events made while no API runs, then the receiver and the API started again: all of them arrive, in order."""
    from tests.conftest import api_server

    state = tmp_path / "state"
    webhooks.add(StateStore(state), receiver.url, "alice", allow_private=True)
    monkeypatch.setattr(webhook_outbox, "QUEUED_LISTENERS", [])  # this process only writes events
    store = StateStore(state)
    receiver.stop()
    with api_server(["--state-dir", str(state)], {}, tmp_path / "api-1.log"):
        store.audit.append("alice", "run started", "run-0")
        deadline = time.monotonic() + 10
        while not webhook_delivery.deliveries(store)[0]["attempts"] and time.monotonic() < deadline:
            time.sleep(0.05)
    assert webhook_delivery.deliveries(store)[0]["attempts"] >= 1  # the first API tried, and failed
    for number in (1, 2):
        store.audit.append("alice", "run started", f"run-{number}")
    store.db.execute("UPDATE webhook_deliveries SET next_attempt_at='2000-01-01T00:00:00.000000Z'")  # due now
    receiver.start()
    with api_server(["--state-dir", str(state)], {}, tmp_path / "api-2.log"):
        receiver.wait_for(3)
    assert [document["details"]["target"] for document in receiver.documents()] == ["run-0", "run-1", "run-2"]


def test_an_endpoint_added_through_the_api_names_the_inventorys_cluster_unless_told(tmp_path, receiver):
    from tests.unit.test_api import LOOPBACK_INVENTORY, free_port

    inventory = tmp_path / "inventory.py"
    text = LOOPBACK_INVENTORY.format(port=free_port(), grafana=False).replace(
        '"root",', '"root", "cluster_name": "east",'
    )
    inventory.write_text(text)
    app = create_app(str(inventory), tmp_path / "state")
    token = TokenStore(app.state.store).create("ada", "admin", "test")[1]
    with TestClient(app, raise_server_exceptions=False) as client:
        body = {"url": receiver.url, "allow_private": True}
        headers = {"Authorization": f"Bearer {token}"}
        named = client.post("/api/v1/webhooks", headers=headers, json=body)
        told = client.post("/api/v1/webhooks", headers=headers, json={**body, "cluster": "west"})
        assert (named.json()["cluster"], told.json()["cluster"]) == ("east", "west"), named.text
    webhook_delivery.stop_all()
