"""Growing a running cluster: the lab grows in place by one host, `raydeploy plan` shows and `raydeploy deploy`
changes the new host and, on the monitoring host, only Prometheus's target list (reloaded, never restarted);
every other container keeps its id and start time, and the new node joins and is scraped."""

from __future__ import annotations

import json
import time

import pytest
import requests

from raydeploy.state import StateStore
from tests.lab.test_wrapper import raydeploy_runner

# What may run on the head when a worker is added: Prometheus's target list, its alert rules (they
# count the inventory's Ray nodes) and its reload, and the waits that check (they change nothing)
# that the new node is alive and scraped.
TARGET_LIST = (
    "Prometheus | /etc/raydeploy/prometheus/prometheus.yml",
    "Prometheus | /etc/raydeploy/prometheus/rules/raydeploy.yml",
    "Prometheus | Reload Prometheus (config changed)",
    "Prometheus | Prometheus scrapes every node and Ray node",
    "Ray cluster | Every Ray node alive and serving its metrics",
)


@pytest.fixture(scope="module")
def grown(make_lab, tmp_path_factory):
    """A 1+1 lab deployed, then grown in place to 1+2 and deployed again; what was seen before and after."""
    lab = make_lab("grow")
    lab.up("--workers", "1")
    state_dir = tmp_path_factory.mktemp("grow-state")
    wrapper = raydeploy_runner({**lab.env, "RAYDEPLOY_STATE_DIR": str(state_dir)})
    wrapper("deploy", "--auto-approve", check=True)
    before = {name: containers(lab, name) for name in ("head", "worker-1")}
    hosts_before = {host.name: host for host in lab.state().hosts}
    grew = lab.up("--workers", "2")
    # What the operator is shown before deploying the grown inventory (exit 2: there are changes).
    plans = {name: wrapper("plan", name, "--json") for name in ("ray-deployment", "monitoring-deployment")}
    started = time.monotonic()
    deployed = wrapper("deploy", "--auto-approve", check=True)
    took = time.monotonic() - started
    print(f"adding one worker: raydeploy deploy took {took:.1f} s")
    run_id = StateStore(state_dir).last_run()["id"]
    rows = StateStore(state_dir).operations(run_id)
    yield lab, wrapper, before, hosts_before, grew, deployed, rows, plans
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def containers(lab, name: str) -> dict[str, tuple[str, str]]:
    """Each container on lab host NAME: (id, start time)."""
    found = json.loads(lab.host(name).check_output("docker inspect $(docker ps -q)"))
    return {item["Name"].lstrip("/"): (item["Id"], item["State"]["StartedAt"]) for item in found}


def test_the_lab_grows_in_place_by_one_host(grown):
    lab, _wrapper, _before, hosts_before, grew, _deployed, _rows, _plans = grown
    assert grew.returncode == 0, grew.stdout + grew.stderr
    hosts_after = {host.name: host for host in lab.state().hosts}
    assert set(hosts_after) == {"head", "worker-1", "worker-2"}
    for name, host in hosts_before.items():
        assert hosts_after[name] == host, f"{name} was recreated or moved"


def test_adding_a_worker_changes_the_new_host_and_only_the_target_list_elsewhere(grown):
    _lab, _wrapper, _before, _hosts, _grew, _deployed, rows, _plans = grown
    changed = [(row["host"], row["operation"]) for row in rows if row["result"] == "changed"]
    assert any(host == "worker-2" for host, _ in changed), changed
    elsewhere = [(host, operation) for host, operation in changed if host != "worker-2"]
    assert elsewhere, "the monitoring host's target list names the new worker"
    assert all(host == "head" and operation.endswith(TARGET_LIST) for host, operation in elsewhere), elsewhere
    assert any(operation.endswith("Reload Prometheus (config changed)") for _, operation in elsewhere), elsewhere


def test_the_plan_shows_changes_on_the_new_host_and_only_the_target_list_elsewhere(grown):
    plans = grown[-1]
    for name, result in plans.items():
        assert result.returncode == 2, result.output  # 2: the plan has changes
        (plan,) = json.loads(result.stdout)
        changed = {host: entry["operations"] for host, entry in plan["hosts"].items() if entry["changes"]}
        print(f"{name} plan: {json.dumps(changed, indent=1)}")
        assert changed.get("worker-2"), (name, changed)
        elsewhere = {host: operations for host, operations in changed.items() if host != "worker-2"}
        assert set(elsewhere) <= {"head"}, (name, elsewhere)
        assert all(operation.endswith(TARGET_LIST) for operation in elsewhere.get("head", [])), (name, elsewhere)
    (monitoring,) = json.loads(plans["monitoring-deployment"].stdout)
    on_head = monitoring["hosts"]["head"]["operations"]
    assert any(operation.endswith(TARGET_LIST[0]) for operation in on_head), on_head  # the target list
    assert any(operation.endswith(TARGET_LIST[1]) for operation in on_head), on_head  # the alert rules


def test_existing_containers_keep_their_ids_and_start_times(grown):
    lab, _wrapper, before, *_ = grown
    for name, found in before.items():
        assert containers(lab, name) == found, f"a container on {name} was recreated or restarted"


def test_the_new_node_joins_and_prometheus_scrapes_it(grown):
    lab, _wrapper, *_ = grown
    state = lab.state()
    token = (lab.home / lab.name / "secrets" / "ray-auth-token").read_text().strip()
    nodes = requests.get(
        f"http://127.0.0.1:{state.head.published['ray-dashboard']}/api/v0/nodes",
        params={"filter_keys": "state", "filter_predicates": "=", "filter_values": "ALIVE"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()["data"]["result"]["result"]
    assert state.host("worker-2").cluster_address in {node["node_ip"] for node in nodes}
    targets = requests.get(
        f"http://127.0.0.1:{state.head.published['prometheus']}/api/v1/targets", params={"state": "active"}, timeout=10
    ).json()["data"]["activeTargets"]
    scraped = {(t["labels"]["job"], t["labels"].get("node")) for t in targets if t["health"] == "up"}
    assert {("node", "worker-2"), ("ray", "worker-2")} <= scraped, scraped
