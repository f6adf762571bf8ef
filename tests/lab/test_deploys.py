"""The pyinfra deploys on real lab hosts: plan, deploy, converge, recover, clean up."""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest
import requests

from bench.day2 import rejoined
from bench.upgrade import Probe
from tests.lab.conftest import DeployedCluster, changed_operations, deploy, grand_total

RAY_IMAGE = "rayproject/ray:2.60.0-py311-cpu"


def test_dry_run_on_a_fresh_lab_lists_the_plan_and_changes_nothing(fresh_lab):
    result = fresh_lab.pyinfra("inventories/lab.py", "deploys/ray.py", "--dry")
    output = result.stdout + result.stderr
    assert "Detected changes" in output
    assert re.search(r"Install docker\.io .*3 \(head, worker-1, worker-2\)", output), output
    assert re.search(r"Ray head container\s+1 \(head\)", output), output
    assert re.search(r"Ray worker container\s+2 \(worker-1, worker-2\)", output), output
    for name in ("head", "worker-1", "worker-2"):
        host = fresh_lab.host(name)
        assert not host.exists("docker"), f"dry run installed docker on {name}"
        assert not host.file("/etc/docker/daemon.json").exists
        assert not host.file("/etc/raydeploy").exists


def test_prerequisites_pass_on_the_lab_and_change_nothing(fresh_lab):
    result = deploy(fresh_lab, "deploys/prerequisites-check.py")
    assert grand_total(result.output) == (0, 0)


def test_failed_prerequisites_are_reported_for_every_host_at_once(fresh_lab):
    result = deploy(fresh_lab, "deploys/ray.py", "--data", "min_memory_mb=99999999", check=False)
    assert result.returncode != 0
    assert "prerequisites-check failed on 3 of 3 hosts, nothing was changed" in result.output
    for name in ("head", "worker-1", "worker-2"):
        assert re.search(rf"{name}: \d+ MiB of memory, less than min_memory_mb=99999999", result.output)
    assert not fresh_lab.host("head").exists("docker")


def test_bad_settings_stop_the_run_naming_host_key_value_and_choices(fresh_lab):
    result = deploy(
        fresh_lab, "deploys/ray.py", "--data", "docker_source=snap", "--data", "ray_num_cpus=many", check=False
    )
    assert result.returncode != 0
    assert "bad inventory data, nothing was changed" in result.output
    assert "worker-1: docker_source='snap' must be one of: docker-ce, distro" in result.output
    assert "head: ray_num_cpus='many' must be a whole number >= 0" in result.output
    assert not fresh_lab.host("worker-1").exists("docker")


def test_docker_ce_source_plans_dockers_own_repository(fresh_lab):
    result = fresh_lab.pyinfra(
        "inventories/lab.py", "deploys/docker-installation.py", "--dry", "--data", "docker_source=docker-ce"
    )
    output = result.stdout + result.stderr
    assert re.search(r"Docker's apt key\s+3 ", output), output
    assert re.search(r"Docker's apt repository\s+3 ", output), output
    assert re.search(r"Install docker-ce \(Docker's repository\)\s+3 ", output), output
    assert "Install docker.io" not in output


def test_docker_ce_repository_names_each_hosts_own_architecture(fresh_lab):
    worker = fresh_lab.host("worker-1")
    # worker-1's dpkg answers as an arm64 host's would; everything else it does is the real dpkg.
    shim = ["#!/bin/sh", '[ "$1" = --print-architecture ] && exec echo arm64', 'exec /usr/bin/dpkg "$@"']
    worker.check_output(f"printf '%s\\n' {' '.join(shlex.quote(line) for line in shim)} > /usr/local/bin/dpkg")
    worker.check_output("chmod +x /usr/local/bin/dpkg")
    try:
        assert worker.check_output("dpkg --print-architecture") == "arm64"
        result = fresh_lab.pyinfra(
            "inventories/lab.py",
            "deploys/docker-installation.py",
            "--dry",
            "--diff",
            "--data",
            "docker_source=docker-ce",
        )
    finally:
        worker.check_output("rm -f /usr/local/bin/dpkg")
    output = result.stdout + result.stderr
    planned = dict(
        re.findall(
            r"\[([\w-]+)\]\s+Will create /etc/apt/sources.list.d/docker.list\n.*\n\s+\+ deb \[arch=(\w+) ", output
        )
    )
    assert planned == {"head": "amd64", "worker-1": "arm64", "worker-2": "amd64"}, output
    assert not worker.file("/etc/apt/sources.list.d/docker.list").exists


def test_full_deploy_brings_up_three_alive_nodes_with_their_cpus(deployed):
    nodes = deployed.wait_for_alive(3)
    state = deployed.lab.state()
    assert set(nodes) == {host.cluster_address for host in state.hosts}
    assert sum(nodes.values()) == 6.0  # ray_num_cpus: 2 on each of the three lab hosts


def test_redis_holds_the_gcs_data(deployed):
    head = deployed.lab.host("head")
    # The password from Redis's own config, into redis-cli's environment: on no command line.
    auth = "REDISCLI_AUTH=\"$(sed -n 's/^requirepass //p' /usr/local/etc/redis/redis.conf)\""
    command = auth + " redis-cli -p 6380 keys '*'"
    keys = head.check_output(f"docker exec ray-redis sh -c {shlex.quote(command)}")
    assert "RAYraydeploy-2.60.0-py3.11@NODE" in keys.split(), keys  # the namespace of its Ray release
    refused = head.run("docker exec ray-redis redis-cli -p 6380 ping")
    assert "NOAUTH" in refused.stdout + refused.stderr


def test_every_container_has_a_health_check_and_becomes_healthy(deployed):
    deadline = time.monotonic() + 120
    wanted = {("head", "ray-head"), ("head", "ray-redis"), ("worker-1", "ray-worker"), ("worker-2", "ray-worker")}
    wanted |= {("head", "prometheus")} | {(name, "node-exporter") for name in ("head", "worker-1", "worker-2")}
    states = {}
    while time.monotonic() < deadline:
        states = {key: deployed.container(*key)["State"].get("Health", {}).get("Status") for key in wanted}
        if set(states.values()) == {"healthy"}:
            break
        time.sleep(3)
    assert set(states.values()) == {"healthy"}, states
    for key in wanted:
        assert deployed.container(*key)["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_second_run_changes_nothing_and_asks_each_host_for_its_containers_twice(deployed):
    result = deploy(deployed.lab, "deploys/ray.py", "--debug")
    assert grand_total(result.output) == (0, 0), changed_operations(result.output)
    # Once for every operation of the run (nothing changed the host since), once for final validation.
    asked = re.findall(r"Running command on ([\w-]+): .*docker ps -qa", result.output)
    assert {name: asked.count(name) for name in ("head", "worker-1", "worker-2")} == {
        "head": 2,
        "worker-1": 2,
        "worker-2": 2,
    }, asked


# The lab's secret files and the uid of the container user that reads each (the lab's images: Ray runs
# as root, Debian's redis user is 100, Prometheus runs as nobody).
SECRET_FILES = {
    ("head", "/etc/raydeploy/ray-auth-token"): 0,
    ("head", "/etc/raydeploy/redis-password"): 0,
    ("head", "/etc/raydeploy/redis.conf"): 100,
    ("head", "/etc/raydeploy/prometheus/ray-auth-token"): 65534,
    ("worker-1", "/etc/raydeploy/ray-auth-token"): 0,
    ("worker-2", "/etc/raydeploy/ray-auth-token"): 0,
}
# Ray itself puts the Redis password on these processes' command lines (README, "Secrets").
RAY_PROCESSES_GIVEN_THE_REDIS_PASSWORD = {"gcs_server", "raylet"}


def secret_file_modes(lab) -> dict[tuple[str, str], str]:
    return {(name, path): lab.host(name).check_output(f"stat -c '%a %u %g' {path}") for name, path in SECRET_FILES}


def processes_showing(lab, secret: str) -> list[tuple[str, str]]:
    """(host, program) of every process on every lab host (their containers' too) whose arguments hold SECRET."""
    found = []
    for name in ("head", "worker-1", "worker-2"):
        for args in lab.host(name).check_output("ps -e -ww -o args=").splitlines():
            if secret in args:
                found.append((name, args.split()[0].rsplit("/", 1)[-1]))
    return found


def test_secret_files_are_0600_owned_by_their_reader_and_an_earlier_versions_modes_are_fixed(deployed):
    lab = deployed.lab
    assert secret_file_modes(lab) == {key: f"600 {uid} 0" for key, uid in SECRET_FILES.items()}
    # As the previous version left them: redis.conf 0644, Prometheus's token 0640 root:nobody, env files.
    head, worker = lab.host("head"), lab.host("worker-1")
    head.check_output("chmod 644 /etc/raydeploy/redis.conf && chown 0:0 /etc/raydeploy/redis.conf")
    head.check_output("chmod 640 /etc/raydeploy/prometheus/ray-auth-token")
    head.check_output("chown 0:65534 /etc/raydeploy/prometheus/ray-auth-token")
    worker.check_output("echo RAY_AUTH_TOKEN=old > /etc/raydeploy/ray.env && chmod 600 /etc/raydeploy/ray.env")
    result = deploy(lab)
    assert grand_total(result.output)[1] == 0, result.output
    changed = set(changed_operations(result.output))
    assert {
        "Ray cluster | /etc/raydeploy/redis.conf (read by Redis)",
        "Monitoring stack | Prometheus | /etc/raydeploy/prometheus/ray-auth-token (read by Prometheus)",
        "Ray cluster | No /etc/raydeploy/ray.env (secrets now in files)",
    } <= changed, changed
    assert not [name for name in changed if "container" in name], changed  # modes alone recreate nothing
    assert secret_file_modes(lab) == {key: f"600 {uid} 0" for key, uid in SECRET_FILES.items()}
    assert not worker.file("/etc/raydeploy/ray.env").exists
    assert grand_total(deploy(lab).output) == (0, 0)


def test_secrets_never_appear_in_the_deploy_output_container_configs_or_any_process(deployed):
    lab = deployed.lab
    result = deploy(lab, "deploys/ray.py", "-v")
    secrets = {"Ray token": deployed.token, "Redis password": deployed.redis_password}
    grafana = lab.home / lab.name / "secrets" / "grafana-admin-password"
    if grafana.exists():  # Grafana is off in the lab, and its password made only where it runs
        secrets["Grafana password"] = grafana.read_text().strip()
    inspected = {}
    for name in ("head", "worker-1", "worker-2"):
        for container in json.loads(lab.host(name).check_output("docker inspect $(docker ps -aq)")):
            inspected[(name, container["Name"].lstrip("/"))] = json.dumps(container)
    assert {("head", "ray-head"), ("head", "ray-redis"), ("head", "prometheus"), ("worker-1", "ray-worker")} <= set(
        inspected
    )
    for what, secret in secrets.items():
        assert secret not in result.output, what
        shown = [key for key, text in inspected.items() if secret in text]
        assert not shown, f"the {what} is in `docker inspect` of {shown}"
    assert processes_showing(lab, deployed.token) == []
    given = processes_showing(lab, deployed.redis_password)
    assert {program for _, program in given} == RAY_PROCESSES_GIVEN_THE_REDIS_PASSWORD, given
    assert {name for name, _ in given} == {"head"}


def test_a_job_without_the_token_is_refused(deployed):
    job = {"entrypoint": "echo hello"}
    refused = requests.post(f"{deployed.dashboard}/api/jobs/", json=job, timeout=10)
    assert refused.status_code in (401, 403), refused.text
    listed = requests.get(
        f"{deployed.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {deployed.token}"}, timeout=10
    )
    assert listed.status_code == 200


def test_a_restarted_head_recovers_the_cluster_without_a_redeploy(deployed):
    workers_before = {
        name: deployed.container(name, "ray-worker")["State"]["StartedAt"] for name in ("worker-1", "worker-2")
    }
    deployed.lab.host("head").check_output("docker restart ray-head")
    deployed.wait_for_alive(3, timeout_s=120)
    for name, started in workers_before.items():
        assert deployed.container(name, "ray-worker")["State"]["StartedAt"] == started, f"{name}'s worker restarted"


def reboot(deployed: DeployedCluster, engine, name: str) -> float:
    """Restart lab host NAME's container (its systemd, Docker and containers boot again, its disk stays);
    the seconds until every Ray node is alive again, reported in the test's output."""
    state, probe = deployed.lab.state(), Probe(deployed.dashboard, deployed.token)
    since, started = time.time(), time.monotonic()
    engine.run(["restart", state.host(name).container])
    # Back: 3 nodes alive, the restarted host's a new one (its old node stays listed ALIVE a while).
    while not rejoined(probe.poll(), 3, state.host(name).cluster_address, since):
        assert time.monotonic() < started + 300, f"the cluster was not whole 300 s after {name} restarted"
        time.sleep(1)
    took = time.monotonic() - started
    print(f"reboot of {name}: every Ray node alive again after {took:.1f} s")
    return took


@pytest.mark.parametrize("name", ["worker-1", "head"])
def test_a_rebooted_host_brings_its_part_of_the_cluster_back_by_itself(deployed, engine, name):
    before = deployed.lab.state()
    submitted = requests.post(
        f"{deployed.dashboard}/api/jobs/",
        json={"entrypoint": f"echo before the reboot of {name}"},
        headers={"Authorization": f"Bearer {deployed.token}"},
        timeout=30,
    )
    assert submitted.status_code == 200, submitted.text
    submission = submitted.json()["submission_id"]
    reboot(deployed, engine, name)
    after = deployed.lab.state()
    assert after.host(name).ssh_port == before.host(name).ssh_port, "the lab's ports follow a rebooted host"
    assert deployed.lab.host(name).check_output("systemctl is-enabled docker") == "enabled"
    assert deployed.lab.host(name).check_output("hostname") == name  # reached at the port the state names
    assert submission in {job["submission_id"] for job in deployed.jobs()}, (
        "the head kept its jobs (Redis keeps the GCS state)"
    )
    deployed.wait_until_settled(timeout_s=180)


def test_right_after_ray_deployment_ray_status_lists_every_node(deployed):
    # `ray status` reads the autoscaler's report, which lags the node table by seconds: the deploy's
    # wait ends only once it agrees. New CPU counts recreate every Ray container, so all rejoin.
    result = deploy(deployed.lab, "deploys/ray-deployment.py", "--data", "ray_num_cpus=1")
    try:
        assert "Ray cluster | Ray head container" in changed_operations(result.output), result.output
        head = deployed.lab.host("head")
        for _ in range(4):
            status = head.check_output("docker exec ray-head ray status")
            assert len(re.findall(r"^ 1 node_[0-9a-f]{56}$", status, re.M)) == 3, status
            assert re.search(r"^ 0\.0/3\.0 CPU$", status, re.M), status  # the new nodes, one CPU each
    finally:
        assert grand_total(deploy(deployed.lab).output)[1] == 0  # back to the lab's settings


def test_a_new_ray_image_tag_recreates_the_ray_containers_and_nothing_else(deployed, engine):
    state = deployed.lab.state()
    alias = f"127.0.0.1:{state.registry_published_port}/rayproject/ray:2.60.0-py311-cpu-retag"
    engine.run(["tag", "raydeploy-lab/ray:2.60.0-py311-cpu", alias])
    engine.run(["push", alias])
    engine.run(["rmi", alias])
    ids = {
        key: deployed.container(*key)["Id"]
        for key in (
            ("head", "ray-head"),
            ("head", "ray-redis"),
            ("head", "prometheus"),
            ("head", "node-exporter"),
            ("worker-1", "ray-worker"),
            ("worker-2", "ray-worker"),
        )
    }
    result = deploy(deployed.lab, "deploys/ray.py", "--data", "ray_image=rayproject/ray:2.60.0-py311-cpu-retag")
    assert grand_total(result.output)[1] == 0, result.output
    after = {key: deployed.container(*key)["Id"] for key in ids}
    for key in (("head", "ray-redis"), ("head", "prometheus"), ("head", "node-exporter")):
        assert after[key] == ids[key], f"{key} was recreated"
    for key in (("head", "ray-head"), ("worker-1", "ray-worker"), ("worker-2", "ray-worker")):
        assert after[key] != ids[key], f"{key} was not recreated"
        assert deployed.container(*key)["Config"]["Image"] == "rayproject/ray:2.60.0-py311-cpu-retag"
    assert not any("Docker enabled" in name for name in changed_operations(result.output))
    deployed.wait_for_alive(3)
    back = deploy(deployed.lab)  # and back to the lab's image
    assert grand_total(back.output)[1] == 0


def test_a_daemon_json_change_restarts_docker_once_and_everything_comes_back(deployed):
    def docker_starts(name: str) -> str:
        return deployed.lab.host(name).check_output("systemctl show docker --property=ActiveEnterTimestamp")

    before = {name: docker_starts(name) for name in ("head", "worker-1", "worker-2")}
    result = deploy(deployed.lab, "deploys/ray.py", "--data", "docker_log_max_file=5")
    assert grand_total(result.output)[1] == 0, result.output
    changed = changed_operations(result.output)
    assert "Install Docker | Render /etc/docker/daemon.json" in changed
    assert not any("container" in name for name in changed), changed
    for name in before:
        assert docker_starts(name) != before[name], f"docker on {name} was not restarted"
        assert '"max-file": "5"' in deployed.lab.host(name).file("/etc/docker/daemon.json").content_string
    deployed.wait_for_alive(3)
    again = deploy(deployed.lab, "deploys/ray.py", "--data", "docker_log_max_file=5")
    assert grand_total(again.output) == (0, 0), changed_operations(again.output)
    deploy(deployed.lab)


def test_cleanup_removes_planted_leftovers_and_keeps_what_it_does_not_recognise(deployed):
    worker = deployed.lab.host("worker-1")
    worker.check_output(f"docker run -d --name ray_head --entrypoint sleep {RAY_IMAGE} infinity")
    worker.check_output(f"docker run -d --name myapp --entrypoint sleep {RAY_IMAGE} infinity")
    worker.check_output("docker run -d --name redis redis:7.0")
    # A process named like Ray's raylet, outside any container, as a pip install's `ray start` leaves.
    pid = worker.check_output(
        "cp /bin/sleep /usr/local/bin/raylet; setsid /usr/local/bin/raylet 3600 >/dev/null 2>&1 </dev/null & echo $!"
    ).strip()
    try:
        plan = deployed.lab.pyinfra("inventories/lab.py", "deploys/cleanup-existing.py", "--dry")
        plan_output = plan.stdout + plan.stderr
        assert re.search(
            r"\[worker-1\]\s+cleanup will remove container ray_head: from an older deployment", plan_output
        )
        assert re.search(
            r"\[worker-1\]\s+cleanup will remove process \d+: Ray outside a container: /usr/local/bin/raylet",
            plan_output,
        )
        assert "myapp" not in plan_output and "container redis" not in plan_output
        assert re.search(r"\[(head|worker-2)\]\s+cleanup: nothing left from earlier installations", plan_output)

        deploy(deployed.lab, "deploys/cleanup-existing.py")
        names = worker.check_output("docker ps -a --format '{{.Names}}'").split()
        assert "ray_head" not in names
        assert {"myapp", "redis", "ray-worker"} <= set(names)
        assert worker.run(f"kill -0 {pid}").rc != 0, "the bare-metal raylet is still running"
        assert deployed.container("worker-1", "ray-worker")["State"]["Running"]
        deployed.wait_for_alive(3)
    finally:
        worker.run(f"docker rm -f ray_head myapp redis; kill {pid}; rm -f /usr/local/bin/raylet; true")
