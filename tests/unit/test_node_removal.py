"""remove-node's pure logic: its arguments, what it refuses, what Prometheus keeps, what the drain says,
and the hosts the state remembers against the inventory."""

from __future__ import annotations

import json

import pytest
import yaml

from deploys import node_removal
from deploys.monitoring_config import alert_rules, prometheus_config
from deploys.node_removal import (
    Removal,
    remaining_cluster,
    removal_from_data,
    removal_problems,
    removal_warnings,
)
from deploys.scripts.drain_ray_node import drain_command, verdict
from facts.ray_answers import running_jobs, running_work, work_path
from raydeploy.host_records import host_notices, hosts_after
from raydeploy.node_actions import removal_data
from raydeploy.state import StateStore
from tests.clusters import make_cluster


def test_the_cli_arguments_become_the_host_data_the_deploy_reads_back():
    data = removal_data(["worker-2", "worker-3", "worker-2"], "5m", False)
    assert data == {"remove_hosts": "worker-2,worker-3", "drain_timeout": "300", "remove_on_drain_timeout": "no"}
    assert removal_from_data(data) == Removal(("worker-2", "worker-3"), 300, False)
    assert removal_from_data({"remove_hosts": "w", "remove_on_drain_timeout": "yes"}).remove_on_timeout
    with pytest.raises(ValueError, match="give a duration like 30s"):
        removal_data(["worker-2"], "soon", False)
    with pytest.raises(ValueError, match="needs the hosts to remove"):
        removal_from_data({"drain_timeout": "30"})
    with pytest.raises(ValueError, match="whole number of seconds"):
        removal_from_data({"remove_hosts": "w", "drain_timeout": "-1"})


def test_the_head_unknown_hosts_and_the_monitoring_host_are_refused_naming_what_to_do():
    cluster = make_cluster(workers=2)
    assert removal_problems(cluster, ("worker-2",)) == []
    (unknown,) = removal_problems(cluster, ("worker-9",))
    assert unknown.startswith("unknown host(s) worker-9; the inventory's hosts are: head, worker-1, worker-2")
    (head,) = removal_problems(cluster, ("head",))
    assert head == "head is the Ray head: removing it ends the cluster; that is `raydeploy destroy`"
    separate = make_cluster(workers=1, monitoring="metrics")
    assert "not a Ray worker" in removal_problems(separate, ("metrics",))[0]


def test_prometheus_stops_scraping_removed_workers_and_alerts_expect_one_node_fewer():
    remaining = remaining_cluster(make_cluster(workers=2), ("worker-2",))
    config = prometheus_config(remaining)
    assert "worker-1" in config and "worker-2" not in config and "10.0.0.3" not in config
    rules = yaml.safe_load(alert_rules(remaining))
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert any("< 2" in expression for expression in expressions), expressions


SLEEPER = {"id": "raysubmit_sleeper", "status": "RUNNING", "entrypoint": "sleep 900"}


def test_removing_the_last_worker_names_the_running_jobs_and_says_what_happens_to_them():
    cluster = make_cluster(workers=2, ray_num_cpus=2)
    both = Removal(("worker-1", "worker-2"), 10, remove_on_timeout=True)
    (warning,) = removal_warnings(cluster, both, [SLEEPER, {**SLEEPER, "id": "raysubmit_b", "status": "PENDING"}])
    assert warning == (
        "removing worker-1, worker-2 leaves no Ray worker. Ray jobs running now: raysubmit_sleeper (RUNNING: "
        "sleep 900), raysubmit_b (PENDING: sleep 900); they lose worker-1, worker-2: the drain waits up to 10 s "
        "for their tasks and actors there, then cuts off what still runs (the approval allows it). Afterwards "
        "tasks run on the head's 2 CPUs (ray_num_cpus=2); those that do not fit wait (PENDING); a worker joins "
        "again with `raydeploy deploy` and a worker in the inventory"
    )
    (idle,) = removal_warnings(make_cluster(workers=1, ray_num_cpus=0), Removal(("worker-1",)), [])
    assert "leaves no Ray worker. No Ray job runs now." in idle and "the head offers none (ray_num_cpus=0)" in idle
    (unknown,) = removal_warnings(cluster, Removal(("worker-1", "worker-2")), None)
    assert "The Ray head did not say which jobs run now (its dashboard did not answer): ask `ray job list`" in unknown


def test_removing_one_of_several_workers_names_the_running_jobs_only_when_there_are_some():
    cluster = make_cluster(workers=2)
    one = Removal(("worker-1",), 300)
    assert removal_warnings(cluster, one, []) == [] and removal_warnings(cluster, one, None) == []
    (warning,) = removal_warnings(cluster, one, [SLEEPER])
    assert warning == (
        "Ray jobs running now: raysubmit_sleeper (RUNNING: sleep 900); they lose worker-1: the drain waits up to "
        "300 s for their tasks and actors there, and removes nothing if any still runs then; their new tasks go "
        "to the remaining nodes (head, worker-2)"
    )
    many = [{**SLEEPER, "id": f"j{number}", "entrypoint": "python -c " + "x" * 80} for number in range(12)]
    (crowded,) = removal_warnings(cluster, one, many)
    assert "j9 (RUNNING: python -c " + "x" * 47 + "...)" in crowded and "j10" not in crowded
    assert crowded.count("RUNNING") == 10 and "and 2 more; they lose worker-1" in crowded


def test_the_running_jobs_are_read_from_rays_job_api():
    rows = [
        {"submission_id": "raysubmit_late", "job_id": "03", "status": "RUNNING", "entrypoint": "b", "start_time": 9},
        {"submission_id": None, "job_id": "02000000", "status": "RUNNING", "entrypoint": "", "start_time": 5},
        {"submission_id": "raysubmit_wait", "status": "PENDING", "entrypoint": "python\n  -c 'x'"},
        {"submission_id": "raysubmit_done", "status": "SUCCEEDED", "entrypoint": "a", "start_time": 1},
        {"submission_id": "raysubmit_stop", "status": "STOPPED", "entrypoint": "a", "start_time": 2},
    ]
    assert running_jobs(json.dumps(rows)) == [
        {"id": "raysubmit_wait", "status": "PENDING", "entrypoint": "python -c 'x'"},
        {"id": "02000000", "status": "RUNNING", "entrypoint": ""},
        {"id": "raysubmit_late", "status": "RUNNING", "entrypoint": "b"},
    ]
    assert running_jobs("[]") == [] and running_jobs("{}") is None and running_jobs("curl: (7)") is None


def test_the_drain_is_rays_preemption_drain_with_the_timeout_as_its_deadline():
    command = drain_command("abc123", "10.0.0.1:6379", 300)
    assert command[:5] == ["docker", "exec", "ray-worker", "ray", "drain-node"]
    assert "--reason=DRAIN_NODE_REASON_PREEMPTION" in command
    assert "--deadline-remaining-seconds=300" in command and "--node-id=abc123" in command


def test_a_drain_that_times_out_removes_the_node_only_when_approved_and_names_what_was_cut_off():
    cut = ["task work 3f2a", "actor Counter 9b1c"]
    status, message = verdict("10.0.0.3", cut, remove_on_timeout=False, timeout_s=60)
    assert status == 1 and "nothing was removed" in message and "task work 3f2a; actor Counter 9b1c" in message
    assert "to keep the node instead, run `docker restart ray-worker` on its host" in message
    status, message = verdict("10.0.0.3", cut, remove_on_timeout=True, timeout_s=60)
    assert status == 0 and "removing anyway (approved), cut off: task work 3f2a; actor Counter 9b1c" in message


@pytest.mark.parametrize("policy", ["always", "on-failure"])
def test_a_failed_drain_gives_the_worker_back_the_hosts_own_restart_policy(monkeypatch, policy):
    """The operation's own commands (pyinfra's generator, the host's facts replaced): the worker stays in
    the cluster after a failed drain, so its container must restart as the operator configured it."""
    cluster = make_cluster(workers=1, container_restart_policy=policy)
    monkeypatch.setattr(node_removal, "fact_since_last_change", lambda fact: {"ray-worker": {"labels": {}}})
    monkeypatch.setattr(node_removal, "python_script", lambda *args: "python3 drain.py")
    worker = cluster.workers[0]
    commands = list(node_removal.ray_node_drained._inner(worker, cluster.head, 60, remove_on_timeout=False))
    assert commands == [
        "docker update --restart=no ray-worker >/dev/null",
        f"( python3 drain.py ) || {{ docker update --restart={policy} ray-worker >/dev/null; exit 1; }}",
    ]


def test_the_work_on_a_node_is_read_from_rays_state_api():
    assert "filter_keys=node_id" in work_path("tasks", "n1") and "filter_values=RUNNING" in work_path("tasks", "n1")
    assert "filter_values=ALIVE" in work_path("actors", "n1")
    tasks = {"data": {"result": {"result": [{"task_id": "3f2a" * 8, "name": "work", "node_id": "n1"}]}}}
    assert running_work(json.dumps(tasks), "tasks") == ["task work 3f2a3f2a3f2a3f2a"]
    actors = {"data": {"result": {"result": [{"actor_id": "9b1c", "class_name": "Counter"}]}}}
    assert running_work(json.dumps(actors), "actors") == ["actor Counter 9b1c"]
    assert running_work("{}", "tasks") is None


def test_hosts_deployed_and_removed_are_remembered_and_compared_with_the_inventory(tmp_path):
    store = StateStore(tmp_path)
    store.record_hosts(*hosts_after("ray-deployment", ["head", "worker-1", "worker-2", "worker-3"], {}), "r1")
    store.record_hosts(*hosts_after("remove-node", [], {"remove_hosts": "worker-2"}), "r2")
    assert hosts_after("monitoring-deployment", ["head"], {}) is None
    notices = host_notices(store.hosts(), {"head", "worker-1", "worker-2"}, "inv.py")
    assert notices == [
        "worker-2 was removed by remove-node (run r2) and is still in the inventory: delete it from inv.py, "
        "or the next `raydeploy deploy` deploys it again",
        "worker-3 was deployed (run r1) and is no longer in the inventory: its containers still run there. "
        "Put it back in group 'workers' and run: raydeploy remove-node worker-3 -i inv.py",
    ]


def test_status_names_a_deployed_host_that_left_the_inventory_and_the_command_that_removes_it(raydeploy_cli, tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('head = [("head", {"ssh_hostname": "127.0.0.1"})]\nworkers = ["worker-1"]\n')
    StateStore(tmp_path / "state").record_hosts(["head", "worker-1", "worker-2"], "deployed", "r1")
    result = raydeploy_cli("status", "-i", str(inventory), "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 0, result.stderr
    assert (
        f"host: worker-2 was deployed (run r1) and is no longer in the inventory: its containers still run there. "
        f"Put it back in group 'workers' and run: raydeploy remove-node worker-2 -i {inventory}"
    ) in result.stdout
    assert "worker-1 was" not in result.stdout


@pytest.mark.parametrize("name", ["-rf", "worker 2", "a,b", "wörker", ""])
def test_a_host_name_that_is_not_an_inventory_name_is_refused_before_anything_is_planned(name):
    with pytest.raises(ValueError, match="give inventory host names"):
        removal_data([name], "5m", False)
