"""Worker groups and GPU nodes on real lab hosts (1 head + 2 workers): groups from pyinfra's own inventory
groups, bad group input refused before anything changes, the GPU path up to the hardware (this machine
has no GPU: the GPU worker is seen in a dry run, and a stand-in nvidia-smi answers for the driver where
the test says so), and a mixed cluster whose custom resources steer a Ray job to one group.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import BIN, REPO, api_server, run_command
from tests.lab.conftest import DeployedCluster, TestLab, grand_total

WORKERS = ("worker-1", "worker-2")
# Loads the lab's own inventory, then moves the keys the groups set out of their hosts' data (host data
# would win over group data, as pyinfra documents) and adds the groups.
INVENTORY = """\
import runpy
_lab = runpy.run_path({lab_inventory!r})
_groups = {groups!r}
_set_by_groups = {{key for _, data in _groups.values() for key in data}}
_grouped = {{name for members, _ in _groups.values() for name in members}}


def _without_group_keys(entry):
    name, data = entry
    kept = {{key: value for key, value in data.items() if key not in _set_by_groups}}
    return (name, kept) if name in _grouped else entry


head = _lab["head"]
workers = [_without_group_keys(entry) for entry in _lab["workers"]]
"""
# What a host with two A100s answers to the query facts/gpus.py asks (nvidia-smi --query-gpu=... --format=csv).
STAND_IN_NVIDIA_SMI = """\
#!/bin/sh
# Stand-in for a 2-GPU host's driver, put here by tests/lab/test_groups.py: this machine has no GPU.
echo '0, GPU-0a1b2c3d-0000-4000-8000-000000000000, NVIDIA A100-SXM4-40GB, 550.54.15'
echo '1, GPU-0a1b2c3d-1111-4000-8000-000000000001, NVIDIA A100-SXM4-40GB, 550.54.15'
"""
NO_DRIVER = "host worker-2 is marked gpu: nvidia but has no working NVIDIA driver: install the driver, then re-run"


@pytest.fixture(scope="module")
def groups_lab(make_lab) -> Iterator[TestLab]:
    lab = make_lab("groups")
    lab.up("--workers", "2")
    yield lab
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def grouped(lab: TestLab, tmp_path: Path, groups: dict[str, tuple[list[str], dict]]) -> str:
    """An inventory of LAB whose workers are in GROUPS (name -> (members, group data)); its path."""
    source = INVENTORY.format(lab_inventory=str(REPO / "inventories" / "lab.py"), groups=groups)
    source += "".join(f"{name} = ({members!r}, {data!r})\n" for name, (members, data) in groups.items())
    path = tmp_path / "grouped.py"
    path.write_text(source)
    return str(path)


def host_state(lab: TestLab, name: str) -> str:
    """What a deploy would change on a host: packages, Docker's and our configuration, apt sources, containers."""
    return lab.host(name).check_output(
        "dpkg-query -W -f '${Package} ${Version}\\n'; ls -la /etc/docker /etc/raydeploy /etc/apt/sources.list.d "
        "/etc/apt/keyrings 2>&1; (docker ps -a 2>&1 || true)"
    )


@pytest.fixture
def stand_in_driver(groups_lab) -> Iterator[None]:
    """worker-2 answers nvidia-smi as a host with two GPUs would; removed afterwards."""
    worker = groups_lab.host("worker-2")
    worker.check_output(f"printf '%s' {shlex.quote(STAND_IN_NVIDIA_SMI)} > /usr/local/bin/nvidia-smi")
    worker.check_output("chmod +x /usr/local/bin/nvidia-smi")
    try:
        yield
    finally:
        worker.check_output("rm -f /usr/local/bin/nvidia-smi")


def test_prerequisites_on_a_gpu_host_without_a_driver_fail_naming_it(groups_lab, tmp_path):
    assert not groups_lab.host("worker-2").exists("nvidia-smi")  # the real absence, not a stand-in's
    inventory = grouped(groups_lab, tmp_path, {"gpu": (["worker-2"], {"gpu": "nvidia"})})
    result = groups_lab.pyinfra(inventory, "deploys/prerequisites-check.py", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "prerequisites-check failed on 1 of 3 hosts, nothing was changed" in output, output
    assert f"worker-2: {NO_DRIVER}" in output, output


def refused(lab: TestLab, inventory: str, deploy_file: str = "deploys/ray.py") -> str:
    """Run DEPLOY_FILE (default: the whole deploy) on INVENTORY; it must fail before changing any host. Its output."""
    before = {name: host_state(lab, name) for name in ("head", *WORKERS)}
    result = lab.pyinfra(inventory, deploy_file, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert {name: host_state(lab, name) for name in ("head", *WORKERS)} == before, "a refused deploy changed a host"
    return output


def test_a_group_setting_that_does_not_exist_is_refused_naming_host_group_and_key(groups_lab, tmp_path):
    inventory = grouped(groups_lab, tmp_path, {"small": (["worker-1"], {"ray_num_cpu": 1})})
    output = refused(groups_lab, inventory)
    assert "bad inventory data, nothing was changed" in output, output
    assert "worker-1 (group small): ray_num_cpu is not a setting (did you mean ray_num_cpus?)" in output, output


def test_a_group_with_another_ray_release_is_refused_naming_host_group_and_image(groups_lab, tmp_path):
    old = {"ray_image": "rayproject/ray:2.59.0-py311-cpu"}
    output = refused(groups_lab, grouped(groups_lab, tmp_path, {"old": (["worker-1"], old)}))
    assert "the Ray nodes' images carry different Ray releases" in output, output
    assert "worker-1 (group old): ray_image=rayproject/ray:2.59.0-py311-cpu is Ray 2.59.0 (Python 3.11)" in output


def test_more_gpus_than_the_host_has_are_refused_naming_host_group_and_setting(groups_lab, tmp_path, stand_in_driver):
    inventory = grouped(groups_lab, tmp_path, {"gpu": (["worker-2"], {"gpu": "nvidia", "ray_num_gpus": 4})})
    problem = "worker-2: ray_num_gpus=4 (group gpu) is more GPUs than the host has: nvidia-smi lists 2 (0, 1)"
    output = refused(groups_lab, inventory)
    assert "prerequisites-check failed on 1 of 3 hosts, nothing was changed" in output, output
    assert problem in output, output
    # ray-deployment run on its own checks again, before any of its operations.
    alone = refused(groups_lab, inventory, "deploys/ray-deployment.py")
    assert "ray-deployment GPU check failed on 1 of 3 hosts, nothing was changed" in alone and problem in alone, alone


def test_dry_run_of_a_gpu_worker_plans_the_toolkit_and_its_exact_docker_run(groups_lab, tmp_path, stand_in_driver):
    inventory = grouped(groups_lab, tmp_path, {"gpu": (["worker-2"], {"gpu": "nvidia"})})
    result = groups_lab.pyinfra(inventory, "deploys/ray.py", "--dry", "--diff")
    output = result.stdout + result.stderr
    assert "NVIDIA driver 550.54.15, 2 GPUs (0: NVIDIA A100-SXM4-40GB, 1: NVIDIA A100-SXM4-40GB)" in output
    # The toolkit from NVIDIA's apt repository, on the GPU host only.
    assert re.search(r"NVIDIA's apt key\s+1 \(worker-2\)", output), output
    assert re.search(r"Install nvidia-container-toolkit \(NVIDIA's repository\)\s+1 \(worker-2\)", output), output
    sources = re.search(
        r"\[worker-2\]\s+Will create /etc/apt/sources.list.d/nvidia-container-toolkit.list\n.*\n(.*)", output
    )
    assert sources, output
    assert (
        "+ deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] "
        "https://nvidia.github.io/libnvidia-container/stable/deb/amd64 /" in sources.group(1)
    )
    # daemon.json registers NVIDIA's runtime (its rendering: tests/unit/test_groups.py).
    assert re.search(r"NVIDIA Container Toolkit \| Install nvidia-container-toolkit .*1 \(worker-2\)", output), output
    worker = re.search(r"\[worker-2\]\s+will create container ray-worker: (docker run .*)", output)
    assert worker, output
    command = worker.group(1)
    assert "--runtime=nvidia --gpus=all" in command, command
    assert "--num-gpus=2" in command, command
    assert command.split(" bash -c ")[0].endswith(" rayproject/ray:2.60.0-py311-gpu"), command
    cpu_worker = re.search(r"\[worker-1\]\s+will create container ray-worker: (docker run .*)", output)
    assert cpu_worker and "--gpus" not in cpu_worker.group(1) and "-py311-cpu bash" in cpu_worker.group(1)
    dcgm = re.search(r"\[worker-2\]\s+will create container dcgm-exporter: (docker run .*)", output)
    assert dcgm and "--gpus=all" in dcgm.group(1) and "--env=DCGM_EXPORTER_LISTEN=:9400" in dcgm.group(1), output
    assert not re.search(r"\[(head|worker-1)\]\s+will create container dcgm-exporter", output), output
    assert not groups_lab.host("worker-2").file("/etc/apt/sources.list.d/nvidia-container-toolkit.list").exists


def test_listed_gpu_devices_go_to_docker_and_to_ray(groups_lab, tmp_path, stand_in_driver):
    inventory = grouped(groups_lab, tmp_path, {"gpu": (["worker-2"], {"gpu": "nvidia", "gpu_devices": ["1"]})})
    result = groups_lab.pyinfra(inventory, "deploys/ray-deployment.py", "--dry")
    output = result.stdout + result.stderr
    worker = re.search(r"\[worker-2\]\s+will create container ray-worker: (docker run .*)", output)
    assert worker, output
    assert "'--gpus=\"device=1\"'" in worker.group(1) and "--num-gpus=1" in worker.group(1), worker.group(1)


MIXED = {
    "small": (["worker-1"], {"ray_num_cpus": 1, "ray_resources": {"small": 1}, "ray_labels": {"team": "a"}}),
    "big": (["worker-2"], {"ray_num_cpus": 2, "ray_resources": {"big": 4}, "ray_labels": {"team": "b"}}),
}
# Many tasks that each ask for one unit of "big": every one must run on the big group's node.
JOB = """
import json, ray
ray.init()

@ray.remote(num_cpus=0.01, resources={"big": 1})
def where():
    return ray.util.get_node_ip_address()

print("GROUPS-JOB " + json.dumps(ray.get([where.remote() for _ in range(12)], timeout=120)))
"""


def run_job(cluster: DeployedCluster, script: str) -> str:
    headers = {"Authorization": f"Bearer {cluster.token}"}
    body = {"entrypoint": f"python -c {shlex.quote(script)}"}
    submitted = requests.post(f"{cluster.dashboard}/api/jobs/", json=body, headers=headers, timeout=10)
    submitted.raise_for_status()
    job = submitted.json()["submission_id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = requests.get(f"{cluster.dashboard}/api/jobs/{job}", headers=headers, timeout=10).json()["status"]
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(1)
    logs = requests.get(f"{cluster.dashboard}/api/jobs/{job}/logs", headers=headers, timeout=10).json()["logs"]
    assert status == "SUCCEEDED", logs
    return logs


def node_resources(cluster: DeployedCluster) -> dict[str, dict]:
    response = requests.get(
        f"{cluster.dashboard}/api/v0/nodes",
        params={"limit": 100, "detail": "true"},
        headers={"Authorization": f"Bearer {cluster.token}"},
        timeout=10,
    )
    response.raise_for_status()
    rows = response.json()["data"]["result"]["result"]
    return {row["node_ip"]: row for row in rows if row["state"] == "ALIVE"}


def test_a_mixed_cluster_deploys_and_a_job_asking_for_a_groups_resource_runs_only_there(groups_lab, tmp_path):
    inventory = grouped(groups_lab, tmp_path, MIXED)
    for checkpoint in ("docker-installation", "ray-deployment"):
        result = groups_lab.pyinfra(inventory, f"deploys/{checkpoint}.py", check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and grand_total(output)[1] == 0, output
    cluster = DeployedCluster(groups_lab)
    cluster.wait_for_alive(3)
    address = {host.name: host.cluster_address for host in groups_lab.state().hosts}
    nodes = node_resources(cluster)
    small, big = nodes[address["worker-1"]], nodes[address["worker-2"]]
    assert small["resources_total"]["CPU"] == 1 and small["resources_total"]["small"] == 1, small
    assert big["resources_total"]["CPU"] == 2 and big["resources_total"]["big"] == 4, big
    assert "big" not in small["resources_total"] and "small" not in big["resources_total"]
    assert small["labels"].get("team") == "a" and big["labels"].get("team") == "b", (small, big)
    logs = run_job(cluster, JOB)
    ran_on = json.loads(next(line for line in logs.splitlines() if line.startswith("GROUPS-JOB "))[11:])
    assert len(ran_on) == 12 and set(ran_on) == {address["worker-2"]}, ran_on
    # A second run converges: the groups' settings are what runs.
    again = groups_lab.pyinfra(inventory, "deploys/ray-deployment.py")
    assert grand_total(again.stdout + again.stderr)[0] == 0, again.stdout
    nodes = api_nodes(groups_lab, inventory, tmp_path / "state")
    assert {name: node["group"] for name, node in nodes.items()} == {
        "head": "head",
        "worker-1": "small",
        "worker-2": "big",
    }
    assert nodes["worker-2"]["resources"]["big"] == 4 and nodes["worker-2"]["cpus"] == 2, nodes["worker-2"]
    assert nodes["worker-1"]["offers"]["labels"] == {"team": "a"} and nodes["worker-1"]["status"] == "ONLINE"


def api_nodes(lab: TestLab, inventory: str, state_dir: Path) -> dict[str, dict]:
    """GET /api/v1/nodes of `raydeploy api` serving INVENTORY, by node name."""
    env = {**lab.env, "RAYDEPLOY_STATE_DIR": str(state_dir)}
    token = run_command(
        [str(BIN / "raydeploy"), "api", "token", "create", "--name", "viewer", "--role", "viewer"], env=env, check=True
    ).stdout.strip()
    with api_server(["-i", inventory], env, state_dir / "api-server.log") as base:
        answer = requests.get(f"{base}/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200, answer.text
    return {node["name"]: node for node in answer.json()}
