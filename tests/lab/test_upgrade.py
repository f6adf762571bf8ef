"""Upgrading Ray and rolling back, on a lab of its own made at Ray 2.59.0: a planned, approved
cluster-wide restart to 2.60.0 with its own GCS namespace; a rollback to the recorded spec; a broken
upgrade that goes back by itself; mixed versions refused with nothing changed."""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest
import requests

from bench.labs import Lab as BenchLab
from bench.upgrade import EventWatch
from tests.lab.conftest import DeployedCluster, TestLab
from tests.lab.test_groups import run_job
from tests.lab.test_wrapper import raydeploy_runner

OLD, NEW = "2.59.0", "2.60.0"
HOSTS = ("head", "worker-1", "worker-2")
RAY_CONTAINERS = {"head": "ray-head", "worker-1": "ray-worker", "worker-2": "ray-worker"}


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    """A 1+2 lab at Ray 2.59.0, deployed through the wrapper (so its spec is recorded)."""
    made = make_lab("upgrade")
    made.up("--workers", "2", "--ray-version", OLD)
    state = tmp_path_factory.mktemp("upgrade-state")
    made.wrapper = raydeploy_runner({**made.env, "RAYDEPLOY_STATE_DIR": str(state)})
    made.state_dir = state
    made.wrapper("deploy", "--auto-approve", check=True)
    yield made
    made.down()


def images(lab: TestLab) -> dict[str, str]:
    """The image each host's Ray container runs."""
    return {
        host: lab.host(host).check_output(f"docker inspect --format '{{{{.Config.Image}}}}' {RAY_CONTAINERS[host]}")
        for host in HOSTS
    }


def reported_version(cluster: DeployedCluster) -> str:
    answer = requests.get(
        f"{cluster.dashboard}/api/version", headers={"Authorization": f"Bearer {cluster.token}"}, timeout=10
    )
    answer.raise_for_status()
    return answer.json()["ray_version"]


def namespaces(cluster: DeployedCluster) -> set[str]:
    """The GCS namespaces whose tables Redis holds (keys `RAY<namespace>@...`)."""
    # The password from Redis's own config, into redis-cli's environment: on no command line.
    auth = "REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' /usr/local/etc/redis/redis.conf)\""
    command = auth + " redis-cli -p 6380 --scan --pattern 'RAY*'"
    keys = cluster.lab.host("head").check_output(f"docker exec ray-redis sh -c {shlex.quote(command)}")
    return {found[1] for key in keys.split() if (found := re.match(r"^RAY(.+?)@", key))}


# A job that says which Ray release runs it and how many nodes are alive.
VERSION_JOB = (
    "import ray; ray.init(); "
    "print('UPGRADE-JOB', ray.__version__, len([node for node in ray.nodes() if node['Alive']]))"
)


def containers(lab: TestLab) -> dict[str, str]:
    """Each host's Ray container: its id and when it started."""
    template = "{{.Id}} {{.State.StartedAt}}"
    return {
        host: lab.host(host).check_output(f"docker inspect --format '{template}' {RAY_CONTAINERS[host]}")
        for host in HOSTS
    }


def engine_events(lab: TestLab, filters: list[str], since: float) -> EventWatch:
    """A stream of each lab host's Docker events matching FILTERS, from SINCE (bench/upgrade.py's)."""
    status = json.loads(lab.raydeploy("lab", "status", "--json").stdout)
    return EventWatch(BenchLab(name=lab.name, env=lab.env, up_s=0.0, status=status), filters, since, HOSTS)


def timeline(streamed: dict[str, str]) -> list[tuple[float, str, str, str]]:
    """(unix time, host, action, image or container name) of every streamed event, in order."""
    rows = []
    for host, output in streamed.items():
        for line in filter(str.strip, output.splitlines()):
            event = json.loads(line)
            actor = event.get("Actor") or {}
            what = actor.get("ID", "") if event["Type"] == "image" else actor.get("Attributes", {}).get("name", "")
            rows.append((event["timeNano"] / 1e9, host, event["Action"], what))
    return sorted(rows)


def assert_least_downtime_order(events: list[tuple[float, str, str, str]], image: str) -> None:
    """Every host pulled IMAGE before the first Ray container stopped; the new head started before any worker."""
    pulls = {host: at for at, host, action, what in events if action == "pull" and what == image}
    assert set(pulls) == set(HOSTS), f"every host pulls the new image: {events}"
    first_stop = min(at for at, _, action, what in events if action == "die" and what in RAY_CONTAINERS.values())
    assert max(pulls.values()) < first_stop, f"pulled while the old cluster ran: {events}"
    starts = [(at, what) for at, _, action, what in events if action == "start" and at > first_stop]
    head = min(at for at, what in starts if what == "ray-head")
    assert head < min(at for at, what in starts if what == "ray-worker"), f"the head first, then workers: {events}"


def approve_printed(wrapper, output: str) -> None:
    """Run the approve command a stopped run printed, as approver bob."""
    found = re.search(r"approve it: (raydeploy approve \S+ .*?--acknowledge-risks)", output)
    assert found, output
    words = [{"YOUR_NAME": "bob", "WHY": "CHG-17"}.get(word, word) for word in shlex.split(found[1])[1:]]
    wrapper(*words, check=True)


def test_an_upgrade_is_one_approved_cluster_wide_restart_onto_its_own_gcs_namespace(lab):
    cluster, wrapper = DeployedCluster(lab), lab.wrapper
    assert reported_version(cluster) == OLD and set(images(lab).values()) == {f"rayproject/ray:{OLD}-py311-cpu"}
    before = namespaces(cluster)
    assert f"raydeploy-{OLD}-py3.11" in before, before
    assert f"UPGRADE-JOB {OLD} 3" in run_job(cluster, VERSION_JOB)
    lab.up("--ray-version", NEW)

    planned = wrapper("plan", "ray-deployment")
    assert f"DISRUPTIVE (head): cluster-wide restart: Ray {OLD} -> {NEW} on 3 nodes" in planned.output
    assert "expected downtime about 15 s (measured on the lab" in planned.output
    limited = wrapper("deploy", "--start-from", "ray-deployment", "--limit", "worker-1", "--auto-approve")
    assert limited.returncode == 1 and "leaves out head, worker-2 (--limit)" in limited.output, limited.output
    stopped = wrapper("deploy", "--start-from", "ray-deployment")
    assert stopped.returncode == 3 and "--acknowledge-risks" in stopped.output, stopped.output
    assert reported_version(cluster) == OLD, "nothing changed without the approval"

    approve_printed(wrapper, stopped.output)
    with engine_events(
        lab, ["type=image", "type=container", "event=pull", "event=die", "event=start"], time.time()
    ) as watch:
        upgraded = wrapper("deploy", "--start-from", "ray-deployment")
        time.sleep(1)
        events = timeline(watch.stop())
    assert upgraded.returncode == 0, upgraded.output
    assert "approved by bob (CHG-17)" in upgraded.output and "final-validation: done" in upgraded.output
    assert_least_downtime_order(events, f"rayproject/ray:{NEW}-py311-cpu")
    assert set(images(lab).values()) == {f"rayproject/ray:{NEW}-py311-cpu"}
    assert reported_version(cluster) == NEW and len(cluster.wait_for_alive(3)) == 3
    assert namespaces(cluster) == {f"raydeploy-{NEW}-py3.11"}, "the old cluster's GCS tables are gone"
    assert f"UPGRADE-JOB {NEW} 3" in run_job(cluster, VERSION_JOB)
    again = wrapper("plan", "ray-deployment")
    assert again.returncode == 0, again.output  # exit 0: nothing left to change


def test_rollback_goes_back_to_the_recorded_spec_through_an_approval(lab):
    cluster, wrapper = DeployedCluster(lab), lab.wrapper
    first_deploy = json.loads(wrapper("history", "--json", check=True).stdout)[-1]["id"]
    stopped = wrapper("rollback")
    assert stopped.returncode == 3, stopped.output
    assert f"--with rollback_to={first_deploy}" in stopped.output, "by default: the newest spec unlike the inventory's"
    assert f"goes back: ray_image: 'rayproject/ray:{NEW}-py311-cpu' -> 'rayproject/ray:{OLD}-py311-cpu'" in (
        wrapper("plan", "rollback", "--with", re.search(r"--with (rollback_to=\S+)", stopped.output)[1]).output
    )
    approve_printed(wrapper, stopped.output)
    back = wrapper("rollback")
    assert back.returncode == 0, back.output
    assert set(images(lab).values()) == {f"rayproject/ray:{OLD}-py311-cpu"}
    assert reported_version(cluster) == OLD and len(cluster.wait_for_alive(3)) == 3
    assert "validating the rolled-back cluster against run" in back.output and "final-validation: done" in back.output
    assert f"UPGRADE-JOB {OLD} 3" in run_job(cluster, VERSION_JOB)
    assert namespaces(cluster) == {f"raydeploy-{OLD}-py3.11"}, "back on the old release's own namespace only"
    # The inventory still says 2.60.0: validating against it names the drift.
    drifted = wrapper("checkpoint", "final-validation")
    assert drifted.returncode == 1 and f"the inventory says rayproject/ray:{NEW}-py311-cpu" in drifted.output


def test_a_broken_upgrade_rolls_back_by_itself_and_says_why(lab, broken_ray_image, tmp_path):
    cluster, wrapper = DeployedCluster(lab), lab.wrapper
    broken = broken_ray_image(lab)
    inventory = tmp_path / "broken.py"
    inventory.write_text(
        "from inventories.lab import head, workers\n"
        f"OVERRIDE = {{'ray_image': {broken!r}, 'ray_join_timeout_s': 60}}\n"
        "head = [(name, {**data, **OVERRIDE}) for name, data in head]\n"
        "workers = [(name, {**data, **OVERRIDE}) for name, data in workers]\n"
    )
    failed = wrapper(
        "deploy", "-i", str(inventory), "--start-from", "ray-deployment", "--auto-approve", "--rollback-on-failure"
    )
    assert failed.returncode == 1, failed.output
    assert "rolling back to run" in failed.output and "(validated)" in failed.output, failed.output
    assert re.search(r"ray-deployment failed on (head|worker)", failed.output), failed.output
    assert set(images(lab).values()) == {f"rayproject/ray:{OLD}-py311-cpu"}
    assert reported_version(cluster) == OLD and len(cluster.wait_for_alive(3)) == 3
    audit = json.loads(wrapper("audit", "--json", check=True).stdout)
    events = [event["event"] for event in audit]
    assert "rollback started" in events and "run rolled back" in events
    started = next(event for event in audit if event["event"] == "rollback started")
    assert started["details"]["why"].startswith("ray-deployment failed on "), started
    last = json.loads(wrapper("history", "--json", check=True).stdout)[0]
    assert last["status"] == "failed" and "rolled back" in (last.get("error") or ""), last
    assert last["error"].startswith("ray-deployment failed on "), last


def test_mixed_versions_are_refused_naming_the_hosts_and_nothing_changes(lab, tmp_path):
    wrapper = lab.wrapper
    inventory = tmp_path / "mixed.py"
    inventory.write_text(
        "from inventories.lab import head, workers\n"
        f"head = [(name, {{**data, 'ray_image': 'rayproject/ray:{OLD}-py311-cpu'}}) for name, data in head]\n"
        f"workers = [(name, {{**data, 'ray_image': 'rayproject/ray:{NEW}-py311-cpu'}}) for name, data in workers]\n"
    )
    before, running = images(lab), containers(lab)
    refused = wrapper("deploy", "-i", str(inventory), "--start-from", "ray-deployment", "--auto-approve")
    assert refused.returncode == 1, refused.output
    for host, release in (("head", OLD), ("worker-1", NEW), ("worker-2", NEW)):
        assert f"{host}: ray_image=rayproject/ray:{release}-py311-cpu is Ray {release} (Python 3.11)" in refused.output
    assert images(lab) == before
    assert containers(lab) == running, "the same containers, never restarted"


def test_an_image_pinned_by_digest_deploys_and_a_second_run_changes_nothing(lab, tmp_path):
    """A spec records images as the inventory names them: pinned by digest, a rollback goes back to
    the very bytes even if the tag was pushed again since."""
    wrapper, head = lab.wrapper, lab.host("head")
    tag = f"rayproject/ray:{OLD}-py311-cpu"
    digest = head.check_output(f"docker image inspect --format '{{{{index .RepoDigests 0}}}}' {tag}").split("@")[1]
    pinned = f"{tag}@{digest}"
    inventory = tmp_path / "pinned.py"
    inventory.write_text(
        "from inventories.lab import head, workers\n"
        f"head = [(name, {{**data, 'ray_image': {pinned!r}}}) for name, data in head]\n"
        f"workers = [(name, {{**data, 'ray_image': {pinned!r}}}) for name, data in workers]\n"
    )
    deployed = wrapper("deploy", "-i", str(inventory), "--start-from", "ray-deployment", "--auto-approve")
    assert deployed.returncode == 0, deployed.output
    assert set(images(lab).values()) == {pinned}
    assert reported_version(DeployedCluster(lab)) == OLD
    again = wrapper("plan", "ray-deployment", "-i", str(inventory))
    assert again.returncode == 0, again.output  # exit 0: nothing left to change, no pull again
