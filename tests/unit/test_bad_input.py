"""Bad input named before any host is contacted: an unknown --limit host, a host remove-node cannot remove, a
host diagnose does not know; a self-approval of remove-node; hosts deployed and gone from the inventory."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from raydeploy.api.app import create_app
from raydeploy.api.tokens import TokenStore
from raydeploy.cli import main
from raydeploy.state import StateStore
from tests.unit.test_api import assert_error_shape, auth, free_port

# Every host a closed port on loopback: whatever reaches SSH fails there.
UNREACHABLE = """
_closed = {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, "dashboard_access_url": "http://127.0.0.1:{port}",
            "prometheus_access_url": "http://127.0.0.1:{port}", "grafana_enabled": False}}
head = [("head", dict(_closed, cluster_address="10.0.0.1"))]
workers = [("worker-1", dict(_closed, cluster_address="10.0.0.2")), ("worker-2", dict(_closed, cluster_address="10.0.0.3"))]
"""
KNOWN = "the inventory's hosts are: head, worker-1, worker-2"


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "inventory.py"
    path.write_text(UNREACHABLE.format(port=free_port()))
    return path


def cli(inventory, *args: str):
    state = inventory.parent / "state"
    return CliRunner().invoke(main, [*args, "-i", str(inventory), "--state-dir", str(state)])


def recorded_runs(inventory) -> list:
    state = inventory.parent / "state"
    return StateStore(state).runs() if (state / "state.db").is_file() else []


@pytest.mark.parametrize(
    "command",
    [["plan", "ray-deployment"], ["deploy"], ["checkpoint", "docker-installation"]],
    ids=lambda command: " ".join(command),
)
def test_an_unknown_limit_host_is_a_usage_error_listing_the_inventorys_hosts_before_any_run(inventory, command):
    result = cli(inventory, *command, "--limit", "worker-9", "--limit", "head")
    assert result.exit_code == 2, result.output
    assert f"--limit: unknown host(s) worker-9; {KNOWN}" in result.output
    assert "Traceback" not in result.output and "NoHostError" not in result.output and "resume:" not in result.output
    assert recorded_runs(inventory) == []


REFUSALS = [
    ("worker-9", f"unknown host(s) worker-9; {KNOWN}"),
    ("head", "head is the Ray head: removing it ends the cluster; that is `raydeploy destroy`"),
]


@pytest.mark.parametrize(("host", "said"), REFUSALS, ids=["unknown", "head"])
@pytest.mark.parametrize(
    "command",
    [
        ["remove-node", "{host}"],
        ["plan", "remove-node", "--with", "remove_hosts={host}"],
        [
            "approve",
            "remove-node",
            "--by",
            "bob",
            "--reason",
            "r",
            "--acknowledge-risks",
            "--with",
            "remove_hosts={host}",
        ],
    ],
    ids=["remove-node", "plan", "approve"],
)
def test_remove_node_refuses_what_the_inventory_already_rules_out_with_every_host_unreachable(
    inventory, command, host, said
):
    result = cli(inventory, *[word.format(host=host) for word in command])
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "SSH failed" not in result.output and "Could not connect" not in result.output
    assert recorded_runs(inventory) == []


@pytest.fixture
def api(inventory, tmp_path):
    app = create_app(str(inventory), tmp_path / "api-state")
    tokens = TokenStore(app.state.store)
    client = TestClient(app, raise_server_exceptions=False)
    client.issued = {
        role: tokens.create(f"user-{role}", role, "test")[1] for role in ("viewer", "operator", "approver")
    }
    client.store = app.state.store
    return client


@pytest.mark.parametrize(("host", "said"), REFUSALS, ids=["unknown", "head"])
@pytest.mark.parametrize(
    ("path", "extra", "role"),
    [
        ("/api/v1/actions/remove-node/plan", {}, "viewer"),
        ("/api/v1/actions/remove-node/approvals", {"reason": "r", "acknowledge_risks": True}, "approver"),
        ("/api/v1/actions/remove-node", {}, "operator"),
    ],
    ids=["plan", "approval", "run"],
)
def test_the_apis_remove_node_refuses_what_the_inventory_rules_out_before_any_ssh(api, path, extra, role, host, said):
    answer = api.post(path, json={"hosts": [host], **extra}, headers=auth(api.issued[role]))
    body = assert_error_shape(answer, 400, "INVALID_REQUEST")
    assert said in body["message"] and "SSH" not in body["message"]
    assert api.store.runs() == [] and api.store.approvals() == [] and api.store.current_lock() is None


def test_the_generic_approval_of_remove_node_refuses_an_unknown_host_too(api):
    request = {"reason": "r", "acknowledge_risks": True, "data": {"remove_hosts": "worker-9"}}
    answer = api.post("/api/v1/approvals/remove-node", json=request, headers=auth(api.issued["approver"]))
    assert f"unknown host(s) worker-9; {KNOWN}" in assert_error_shape(answer, 400, "INVALID_REQUEST")["message"]


def test_diagnose_over_the_api_asks_about_the_hosts_named_and_refuses_an_unknown_one(api):
    headers = auth(api.issued["viewer"])
    body = assert_error_shape(
        api.get("/api/v1/cluster/diagnose", params={"host": ["worker-9", "worker-1"]}, headers=headers),
        400,
        "INVALID_REQUEST",
    )
    assert body["message"] == "unknown Ray node(s) worker-9; the Ray nodes are: head, worker-1, worker-2"
    assert body["details"] == {"unknown": ["worker-9"], "known": ["head", "worker-1", "worker-2"]}
    answer = api.get("/api/v1/cluster/diagnose", params={"host": "worker-1"}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert [finding["host"] for finding in answer.json()] == ["worker-1"]
    assert answer.json()[0]["cause"] == "its host did not answer (SSH)"


@pytest.fixture
def recorded_plans(monkeypatch):
    """The API's plans are recorded ones (what a dry run of the hosts would give): worker-1 would be drained."""
    from raydeploy.api import context
    from tests.conftest import plan_of

    def plan(inventory, checkpoint, state_dir, data=None):
        return plan_of(checkpoint.name, "fp", {"worker-1": ["Drain the Ray node"]})

    monkeypatch.setattr(context, "make_plan", plan)


def test_whoever_requested_a_remove_node_cannot_approve_it_under_separation_of_duties(api, recorded_plans):
    mine = auth(api.issued["approver"])  # an approver may request a run too
    requested = api.post("/api/v1/actions/remove-node", json={"hosts": ["worker-1"]}, headers=mine)
    assert requested.status_code == 400 and requested.json()["error"] == "APPROVAL_REQUIRED", requested.text
    (waiting,) = api.store.runs()
    assert waiting["status"] == "awaiting-approval" and waiting["requested_by"] == "user-approver"
    approval = {"hosts": ["worker-1"], "reason": "mine", "acknowledge_risks": True}
    refused = api.post("/api/v1/actions/remove-node/approvals", json=approval, headers=mine)
    assert assert_error_shape(refused, 403, "SEPARATION_OF_DUTIES")["details"]["run_id"] == waiting["id"]
    assert api.store.approvals() == []
    other = TokenStore(api.store).create("carol", "approver", "test")[1]
    granted = api.post("/api/v1/actions/remove-node/approvals", json=approval, headers=auth(other))
    assert granted.status_code == 200 and granted.json()["approved_by"] == "carol", granted.text


GONE = (
    "worker-3 was deployed (run r1) and is no longer in the inventory: its containers still run there. "
    "Put it back in group 'workers' and run: raydeploy remove-node worker-3 -i {inventory}"
)


def test_the_apis_status_and_plans_name_a_deployed_host_that_left_the_inventory(api, inventory, recorded_plans):
    api.store.record_hosts(["head", "worker-1", "worker-2", "worker-3"], "deployed", "r1")
    headers = auth(api.issued["viewer"])
    status = api.get("/api/v1/cluster/status", headers=headers)
    assert status.status_code == 200 and status.json()["notices"] == [GONE.format(inventory=inventory)], status.text
    answers = [
        api.get("/api/v1/plan/cleanup-existing", headers=headers),
        api.post("/api/v1/actions/remove-node/plan", json={"hosts": ["worker-1"]}, headers=headers),
    ]
    for answer in answers:
        assert answer.status_code == 200 and answer.json()["notices"] == [GONE.format(inventory=inventory)], answer.text


def test_plan_json_names_a_deployed_host_that_left_the_inventory(tmp_path):
    import json

    inventory = tmp_path / "local.py"  # one host answers (this machine): pyinfra plans when one does
    inventory.write_text(
        'head = [("@local", {"cluster_address": "10.0.0.1"})]\n'
        f'workers = [("worker-1", {{"ssh_hostname": "127.0.0.1", "ssh_port": {free_port()}, '
        '"cluster_address": "10.0.0.2"})]\n'
    )
    StateStore(tmp_path / "state").record_hosts(["@local", "worker-1", "worker-3"], "deployed", "r1")
    result = cli(inventory, "plan", "prerequisites-check", "--json")
    assert result.exit_code == 0, result.output
    (plan,) = json.loads(result.stdout)
    assert plan["plan"]["hosts"]["worker-1"]["status"] == "unreachable"
    assert plan["notices"] == [GONE.format(inventory=inventory)]
