"""remove-node on a real cluster: a worker is drained through Ray and removed while a job spread over
the cluster runs; the job succeeds, the worker's containers are gone, Prometheus (reloaded, not
restarted) no longer scrapes it, and the state remembers it as removed. A drain that times out removes
nothing and names the actor still running there, unless the approval allowed cutting it off. Removing the
last worker while a job runs is planned naming that job, and goes ahead with the approval."""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest
import requests

from tests.lab.conftest import DeployedCluster
from tests.lab.test_api import follow, serve
from tests.lab.test_wrapper import raydeploy_runner

# Tasks spread over every node, each long enough to be running on worker-2 when its drain begins.
JOB = """python -c '
import ray, time
ray.init()
@ray.remote(num_cpus=1, scheduling_strategy="SPREAD")
def work(i):
    time.sleep(25)
    return ray.get_runtime_context().get_node_id()
nodes = ray.get([work.remote(i) for i in range(9)])
print("JOB DONE on", len(set(nodes)), "nodes")
'"""


@pytest.fixture(scope="module")
def cluster(make_lab, tmp_path_factory):
    lab = make_lab("remove")
    lab.up("--workers", "2")
    state_dir = tmp_path_factory.mktemp("remove-state")
    wrapper = raydeploy_runner({**lab.env, "RAYDEPLOY_STATE_DIR": str(state_dir)})
    wrapper("deploy", "--auto-approve", check=True)
    wrapper.state_dir = state_dir
    yield DeployedCluster(lab), wrapper
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def test_removing_the_head_or_an_unknown_host_is_refused_and_says_why(cluster):
    deployed, wrapper = cluster
    # Judged from the inventory before any SSH: usage errors (exit 2), nothing run or recorded.
    runs_before = wrapper("history", "--json", check=True).stdout
    head = wrapper("remove-node", "head")
    assert head.returncode == 2, head.output
    assert "head is the Ray head: removing it ends the cluster; that is `raydeploy destroy`" in head.output
    unknown = wrapper("remove-node", "worker-9")
    assert unknown.returncode == 2, unknown.output
    assert "unknown host(s) worker-9; the inventory's hosts are: head, worker-1, worker-2" in unknown.output
    assert wrapper("history", "--json", check=True).stdout == runs_before
    assert len(deployed.alive_nodes()) == 3


def submit(deployed: DeployedCluster, entrypoint: str = JOB) -> str:
    answer = requests.post(
        f"{deployed.dashboard}/api/jobs/",
        json={"entrypoint": entrypoint},
        headers={"Authorization": f"Bearer {deployed.token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["submission_id"]


def job_status(deployed: DeployedCluster, submission: str) -> dict:
    return next(job for job in deployed.jobs() if job["submission_id"] == submission)


def wait_job(deployed: DeployedCluster, submission: str, statuses: set[str], timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = job_status(deployed, submission)
        if job["status"] in statuses:
            return job
        time.sleep(2)
    raise AssertionError(f"job {submission} never reached {statuses}: {job}")


def approve_command(output: str) -> list[str]:
    """The approve command the stopped run printed, filled in as an approver would."""
    match = re.search(r"approve it: (raydeploy approve remove-node .*?--acknowledge-risks)", output)
    assert match, output
    words = shlex.split(match.group(1))[1:]
    return [{"YOUR_NAME": "approver", "WHY": "CHG-16"}.get(word, word) for word in words]


def test_a_worker_is_drained_and_removed_while_a_job_runs_and_the_job_succeeds(cluster):
    deployed, wrapper = cluster
    prometheus_started = deployed.container("head", "prometheus")["State"]["StartedAt"]
    stopped = wrapper("remove-node", "worker-2", "--drain-timeout", "3m")
    assert stopped.returncode == 3, stopped.output
    assert "--with remove_hosts=worker-2" in stopped.output and "--with drain_timeout=180" in stopped.output
    approved = wrapper(*approve_command(stopped.output))
    assert approved.returncode == 0, approved.output

    submission = submit(deployed)
    wait_job(deployed, submission, {"RUNNING"})
    time.sleep(8)  # its tasks start on every node
    removed = wrapper("remove-node", "worker-2", "--drain-timeout", "3m")
    assert removed.returncode == 0, removed.output
    assert "approved by approver (CHG-16)" in removed.output

    job = wait_job(deployed, submission, {"SUCCEEDED", "FAILED", "STOPPED"})
    logs = requests.get(
        f"{deployed.dashboard}/api/jobs/{submission}/logs",
        headers={"Authorization": f"Bearer {deployed.token}"},
        timeout=30,
    ).json()["logs"]
    run_log = wrapper("logs", removed.stdout.split()[1].rstrip(":")).stdout
    print(f"job {job['status']}: {job.get('message')}\n{logs[-3000:]}\nremoval run:\n{run_log[-4000:]}")
    assert job["status"] == "SUCCEEDED", (job.get("message"), logs[-3000:], run_log[-3000:])
    assert len(deployed.alive_nodes()) == 2
    worker = deployed.lab.host("worker-2")
    assert worker.check_output("docker ps -aq --filter label=raydeploy.component") == ""
    scraped = {target["labels"].get("node") for target in deployed.targets()}
    assert "worker-2" not in scraped and {"head", "worker-1"} <= scraped, scraped
    assert deployed.container("head", "prometheus")["State"]["StartedAt"] == prometheus_started, "reloaded"

    status = json.loads(wrapper("status", "--json", check=True).stdout)
    assert any(line.startswith("worker-2 was removed by remove-node") for line in status["hosts"]), status
    audit = wrapper("audit", "--json", check=True).stdout
    assert any(e["event"] == "hosts removed" and e["target"] == "worker-2" for e in json.loads(audit)), audit


# A detached actor pinned to one node: it lives until killed, so a drain of that node never finishes.
KEEPER = """python -c '
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerAddress"] == "{address}")
@ray.remote(num_cpus=0)
class Keeper:
    def ping(self):
        return "alive"
keeper = Keeper.options(
    name="keeper", lifetime="detached", scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
).remote()
print("KEEPER", ray.get(keeper.ping.remote()))
'"""


def test_a_drain_that_times_out_removes_nothing_and_names_the_work_still_running(cluster):
    deployed, wrapper = cluster
    address = deployed.lab.state().host("worker-1").cluster_address
    submission = submit(deployed, KEEPER.format(address=address))
    assert wait_job(deployed, submission, {"SUCCEEDED", "FAILED", "STOPPED"})["status"] == "SUCCEEDED"
    stopped = wrapper("remove-node", "worker-1", "--drain-timeout", "15s")
    assert stopped.returncode == 3 and "--with remove_on_drain_timeout=no" in stopped.output, stopped.output
    assert wrapper(*approve_command(stopped.output)).returncode == 0

    failed = wrapper("remove-node", "worker-1", "--drain-timeout", "15s")
    run_log = wrapper("logs", failed.stdout.split()[1].rstrip(":")).stdout
    assert failed.returncode != 0, failed.output
    said = failed.output + run_log
    assert "drain timed out after 15 s and the approval did not allow removing it anyway" in said, said[-3000:]
    assert "actor Keeper" in said, said[-3000:]
    worker = deployed.lab.host("worker-1")
    assert "ray-worker" in worker.check_output("docker ps --format '{{.Names}}'"), "nothing was removed"
    policy = worker.check_output("docker inspect --format '{{.HostConfig.RestartPolicy.Name}}' ray-worker")
    assert policy == "unless-stopped", "a failed drain restores the restart policy"
    assert address in deployed.alive_nodes(), "the node stays in the cluster (DRAINING)"


def test_the_api_removes_the_last_worker_with_an_operators_request_and_another_persons_approval(cluster):
    deployed, wrapper = cluster
    roles = {"ops": "operator", "carol": "approver"}
    with serve(deployed, wrapper.state_dir, roles, "--separation-of-duties") as (base, headers):

        def post(who: str, path: str, body: dict) -> requests.Response:
            return requests.post(
                f"{base}/api/v1/actions/remove-node{path}", json=body, headers=headers[who], timeout=300
            )

        head = post("ops", "/plan", {"hosts": ["head"]})
        assert head.status_code == 400 and "that is `raydeploy destroy`" in head.json()["message"], head.text
        # worker-2, removed above, is still in the lab's inventory: naming it again removes nothing more.
        # worker-1 still holds the Keeper actor: this approval allows cutting it off when the drain times out.
        body = {"hosts": ["worker-1", "worker-2"], "drain_timeout": "10s", "remove_on_drain_timeout": True}
        # A job running now (its driver, a long sleep, runs on the head): the plan names it and what happens.
        sleeper = submit(deployed, "sleep 900")
        wait_job(deployed, sleeper, {"RUNNING"})
        plan = post("ops", "/plan", body).json()
        assert (
            f"removing worker-1, worker-2 leaves no Ray worker. Ray jobs running now: {sleeper} (RUNNING: sleep 900); "
            "they lose worker-1, worker-2: the drain waits up to 10 s for their tasks and actors there, then cuts "
            "off what still runs (the approval allows it). Afterwards tasks run on the head's 2 CPUs"
        ) in plan["text"], plan["text"]
        changes = {host: entry["changes"] for host, entry in plan["hosts"].items()}
        assert changes["worker-1"] > 0 and changes.get("worker-2", 0) == 0, plan["hosts"]
        needed = post("ops", "", body)
        assert needed.status_code == 400 and needed.json()["error"] == "APPROVAL_REQUIRED", needed.text
        assert "/api/v1/actions/remove-node/approvals" in needed.json()["approval_info"]["message"]
        assert post("ops", "/approvals", {**body, "reason": "CHG-17", "acknowledge_risks": True}).status_code == 403
        assert post("carol", "/approvals", {**body, "reason": "CHG-17"}).json()["error"] == "APPROVAL_REFUSED"
        granted = post("carol", "/approvals", {**body, "reason": "CHG-17", "acknowledge_risks": True})
        assert granted.json()["plan_digest"] == plan["digest"], granted.text
        own = post("carol", "", body)
        assert own.status_code == 400 and "separation of duties" in own.json()["message"], own.text
        started = post("ops", "", body)
        assert started.status_code == 202, started.text
        lines, end = follow(base, headers["ops"], started.json()["execution_id"])
        assert end["status"] == "succeeded", (end, lines[-30:])
        cut_off = [line for line in lines if "drain timed out; removed anyway (the approval allowed it)" in line]
        assert len(cut_off) == 1 and cut_off[0].startswith("worker-1:") and "actor Keeper" in cut_off[0], lines[-30:]
        audit = json.loads(wrapper("audit", "--json", check=True).stdout)
        assert any(e["event"] == "drain cut off work" and e["target"] == "worker-1" for e in audit), audit[-5:]
    assert len(deployed.alive_nodes()) == 1
    assert deployed.lab.host("worker-1").check_output("docker ps -aq --filter label=raydeploy.component") == ""
    assert job_status(deployed, sleeper)["status"] == "RUNNING", "the job lost the workers, not its driver"
