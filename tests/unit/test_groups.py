"""Worker groups and GPU nodes, the pure logic: which group a worker is in, group settings merged as
pyinfra merges them, refusals naming host, group and setting, and what a GPU worker's `docker run`
and daemon.json say. The same paths on real hosts: tests/lab/test_groups.py."""

from __future__ import annotations

import json
import re
import shlex
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from deploys.components import monitoring_components
from deploys.gpus import docker_gpu_args, gpu_problems, offered_gpus, toolkit_sources_line
from deploys.host_secrets import SecretFile
from deploys.monitoring_config import prometheus_config
from deploys.ray_cluster import resource_flags, worker_spec
from deploys.settings import SettingsError, settings_from_data
from deploys.topology import Cluster, Node, build_cluster, worker_groups_in
from facts.gpus import NO_DRIVER, parse_gpus
from raydeploy.api.app import create_app
from raydeploy.api.tokens import TokenStore
from raydeploy.commands import status
from raydeploy.node_groups import describe, node_groups
from validate.gpu_checks import gpu_job_problems
from validate.host_checks import rendered_daemon_json
from validate.inventory import InventoryError, load

TWO_GPUS = {
    "driver": "550.54.15",
    "error": "",
    "gpus": [
        {"index": "0", "uuid": "GPU-aaaa", "name": "NVIDIA A100-SXM4-40GB"},
        {"index": "1", "uuid": "GPU-bbbb", "name": "NVIDIA A100-SXM4-40GB"},
    ],
}
NONE_FOUND = {"driver": None, "gpus": [], "error": "nvidia-smi is not installed"}
TOKEN = SecretFile(name="ray-auth-token", path="/etc/raydeploy/ray-auth-token", content="t", owner=0)


def settings(**data):
    return settings_from_data("gpu-1", {"cluster_address": "10.0.0.9", **data})


def head() -> Node:
    return Node("head", "head", settings_from_data("head", {"cluster_address": "10.0.0.1"}), "head")


def members(**workers: dict) -> list[tuple[str, dict]]:
    hosts = {"head": {"ssh_hostname": "10.0.0.1"}}
    for number, (name, data) in enumerate(workers.items(), start=2):
        hosts[name] = {"ssh_hostname": f"10.0.0.{number}", **data}
    return list(hosts.items())


def test_a_workers_group_is_the_inventory_group_under_workers_that_holds_it():
    groups = {"head": ["h"], "workers": ["a", "b", "c"], "gpu": ["b"], "all": ["h", "a", "b", "c"], "dc1": ["h", "a"]}
    found = worker_groups_in(groups, {"gpu": {"gpu": "nvidia"}}, groups["workers"])
    assert found == {"gpu": (["b"], {"gpu": "nvidia"})}  # dc1 holds the head: no worker group


def test_group_settings_reach_their_workers_and_each_node_names_its_group():
    cluster = build_cluster(
        members(a={"ray_num_cpus": 1}, b={"ray_num_cpus": 8, "ray_resources": {"big": 4}}),
        {"head": ["head"], "workers": ["a", "b"]},
        {"big": (["b"], {"ray_num_cpus": 8, "ray_resources": {"big": 4}})},
    )
    by_name = {node.name: node for node in cluster.nodes}
    assert [(node.name, node.group) for node in cluster.nodes] == [("head", "head"), ("a", "workers"), ("b", "big")]
    assert by_name["b"].settings.ray_resources == {"big": 4.0} and by_name["a"].settings.ray_resources == {}
    assert by_name["b"].label == "b (group big)" and by_name["a"].label == "a"


def test_a_group_setting_that_does_not_exist_is_refused_naming_each_host_the_group_and_the_key():
    with pytest.raises(SettingsError) as refused:
        build_cluster(
            members(a={}, b={}),
            {"head": ["head"], "workers": ["a", "b"]},
            {"gpu": (["a", "b"], {"gpus": "nvidia", "ssh_user": "deploy", "_sudo": True})},
        )
    assert str(refused.value).splitlines() == [
        "a (group gpu): gpus is not a setting (did you mean gpu?); the settings are the README's table",
        "b (group gpu): gpus is not a setting (did you mean gpu?); the settings are the README's table",
    ]


def test_a_worker_in_two_groups_is_refused():
    with pytest.raises(SettingsError, match=r"a: is in the worker groups gpu, big; a worker belongs to one group"):
        build_cluster(members(a={}), {"head": ["head"], "workers": ["a"]}, {"gpu": (["a"], {}), "big": (["a"], {})})


def test_a_group_with_another_ray_release_is_refused_naming_host_group_and_image():
    with pytest.raises(SettingsError) as refused:
        build_cluster(
            members(a={"ray_image": "rayproject/ray:2.59.0-py311-gpu"}),
            {"head": ["head"], "workers": ["a"]},
            {"old": (["a"], {"ray_image": "rayproject/ray:2.59.0-py311-gpu"})},
        )
    assert "a (group old): ray_image=rayproject/ray:2.59.0-py311-gpu is Ray 2.59.0 (Python 3.11)" in str(refused.value)


def test_a_bad_group_value_names_host_and_group():
    with pytest.raises(SettingsError, match=r"^a \(group gpu\): gpu='amd' must be one of: none, nvidia$"):
        build_cluster(members(a={"gpu": "amd"}), {"head": ["head"], "workers": ["a"]}, {"gpu": (["a"], {"gpu": "amd"})})


def test_an_inventory_file_with_groups_loads_as_pyinfra_merges_it(tmp_path: Path):
    path = tmp_path / "mixed.py"
    path.write_text(
        "head = [('h', {'ssh_hostname': '10.1.0.1'})]\n"
        "workers = ['c1', 'g1', ('g2', {'ray_num_gpus': 1})]\n"
        "gpu = (['g1', 'g2'], {'gpu': 'nvidia', 'ray_labels': {'accelerator': 'a100'}})\n"
    )
    cluster = load(str(path)).cluster
    rows = {row["name"]: row for row in node_groups(cluster)}
    assert rows["g1"] == {
        "name": "g1",
        "role": "worker",
        "group": "gpu",
        "cpus": None,
        "gpus": None,  # every GPU nvidia-smi lists there
        "gpu": "nvidia",
        "memory_mb": None,
        "resources": {},
        "labels": {"accelerator": "a100"},
        "image": "rayproject/ray:2.60.0-py311-gpu",
    }
    assert rows["g2"]["gpus"] == 1 and rows["c1"]["group"] == "workers" and rows["c1"]["gpus"] == 0
    assert describe(rows["g2"]).startswith("g2           group gpu        cpus all, gpus 1 (nvidia), labels ")
    path.write_text(path.read_text() + "big = (['c1'], {'ray_num_cpu': 4})\n")
    with pytest.raises(InventoryError, match=r"c1 \(group big\): ray_num_cpu is not a setting"):
        load(str(path))


def test_a_gpu_host_runs_the_gpu_build_of_the_clusters_ray_release():
    assert settings(gpu="nvidia").ray_image == "rayproject/ray:2.60.0-py311-gpu"
    assert settings().ray_image == "rayproject/ray:2.60.0-py311-cpu"
    assert settings(gpu="nvidia", ray_gpu_image="my/ray:2.60.0-cuda12").ray_image == "my/ray:2.60.0-cuda12"
    pinned = "rayproject/ray:2.60.0-py311-cpu@sha256:" + "0" * 64
    assert settings(gpu="nvidia", ray_image=pinned).ray_image == "rayproject/ray:2.60.0-py311-gpu", (
        "the CPU build's digest is not the GPU build's"
    )


def test_a_gpu_host_without_a_driver_is_refused_in_the_words_operators_see():
    assert gpu_problems("gpu-1", "gpu", settings(gpu="nvidia"), NONE_FOUND) == [
        "host gpu-1 is marked gpu: nvidia but has no working NVIDIA driver: install the driver, then re-run"
    ]


def test_more_gpus_than_the_host_has_and_unknown_devices_are_refused_naming_group_and_setting():
    problems = gpu_problems("gpu-1", "gpu", settings(gpu="nvidia", ray_num_gpus=4, gpu_devices=["1", "7"]), TWO_GPUS)
    assert problems == [
        "ray_num_gpus=4 (group gpu) is more GPUs than the host has: nvidia-smi lists 2 (0, 1)",
        "gpu_devices=['1', '7'] (group gpu) names GPUs nvidia-smi does not list: 7 (it lists 0, 1)",
    ]
    assert (
        gpu_problems("gpu-1", "gpu", settings(gpu="nvidia", ray_num_gpus=2, gpu_devices=["GPU-bbbb"]), TWO_GPUS) == []
    )
    assert gpu_problems("cpu-1", "workers", settings(ray_num_gpus=1), NONE_FOUND) == [
        "ray_num_gpus=1 (group workers) is more GPUs than the host has: nvidia-smi lists 0"
    ]


def test_ray_offers_what_the_host_has_unless_a_setting_says_otherwise():
    assert offered_gpus(settings(gpu="nvidia"), 2) == 2
    assert offered_gpus(settings(gpu="nvidia", gpu_devices=["1"]), 2) == 1
    assert offered_gpus(settings(gpu="nvidia", ray_num_gpus=1), 2) == 1
    assert offered_gpus(settings(), 2) is None


def test_the_gpu_workers_docker_run_names_the_runtime_the_gpus_the_count_and_the_gpu_image():
    node = Node("gpu-1", "worker", settings(gpu="nvidia", ray_num_cpus=8, ray_labels={"accelerator": "a100"}), "gpu")
    command = shlex.split(worker_spec(node, head(), TOKEN, gpus_found=2).run_command())
    image = command.index("rayproject/ray:2.60.0-py311-gpu")
    assert command[image - 2 : image] == ["--runtime=nvidia", "--gpus=all"]
    start = command[-1]
    assert start.endswith("--num-cpus=8 --num-gpus=2 --labels=accelerator=a100"), start
    listed = Node("gpu-1", "worker", settings(gpu="nvidia", gpu_devices=["0", "2"]), "gpu")
    assert '--gpus="device=0,2"' in shlex.split(worker_spec(listed, head(), TOKEN, gpus_found=4).run_command())
    assert docker_gpu_args(settings()) == ()


def test_memory_resources_and_labels_become_ray_start_flags():
    flags = resource_flags(settings(ray_memory_mb=1024, ray_resources={"big": 4}, ray_labels={"team": "b", "a": 1}))
    assert flags == ["--memory=1073741824", '--resources={"big": 4.0}', "--labels=a=1,team=b"]


def test_daemon_json_registers_nvidias_runtime_on_gpu_hosts_only():
    gpu = rendered_daemon_json(Node("gpu-1", "worker", settings(gpu="nvidia"), "gpu"))
    assert gpu["runtimes"] == {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}
    assert "runtimes" not in rendered_daemon_json(Node("cpu-1", "worker", settings(), "workers"))


def test_the_toolkit_comes_from_nvidias_stable_repository_signed_by_its_key():
    assert toolkit_sources_line("arm64") == (
        "deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] "
        "https://nvidia.github.io/libnvidia-container/stable/deb/arm64 /\n"
    )


def test_gpu_hosts_run_the_dcgm_exporter_and_prometheus_scrapes_it():
    gpu = Node("gpu-1", "worker", settings(gpu="nvidia"), "gpu")
    cpu = Node("cpu-1", "worker", settings_from_data("cpu-1", {"cluster_address": "10.0.0.8"}), "workers")
    cluster = Cluster(head=head(), workers=(gpu, cpu), monitoring=(head(),))
    assert monitoring_components(gpu, cluster)["dcgm-exporter"] is True
    assert "dcgm-exporter" not in monitoring_components(cpu, cluster)
    jobs = {job["job_name"]: job for job in yaml.safe_load(prometheus_config(cluster))["scrape_configs"]}
    assert jobs["dcgm"]["static_configs"] == [{"targets": ["10.0.0.9:9400"], "labels": {"node": "gpu-1"}}]


def test_nvidia_smi_answers_are_read_as_gpus_and_a_driver_version():
    lines = ["0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 550.54.15", "1, GPU-bbbb, NVIDIA A100-SXM4-40GB, 550.54.15"]
    assert parse_gpus(lines) == TWO_GPUS
    failed = [f"{NO_DRIVER} NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."]
    assert parse_gpus(failed)["driver"] is None and "couldn't communicate" in parse_gpus(failed)["error"]
    assert parse_gpus([])["driver"] is None


def test_the_api_document_shows_each_nodes_group_and_offers():
    document = json.loads((Path(__file__).resolve().parents[2] / "raydeploy/api/openapi.json").read_text())
    node = document["components"]["schemas"]["NodeInfo"]
    assert {"group", "offers", "gpus", "resources"} <= set(node["properties"]) and "group" in node["required"]


def test_final_validation_names_each_gpu_node_whose_gpu_task_did_not_see_a_gpu():
    nodes = [
        Node("gpu-1", "worker", settings(gpu="nvidia"), "gpu"),
        Node("gpu-2", "worker", settings_from_data("gpu-2", {"cluster_address": "10.0.0.10", "gpu": "nvidia"}), "gpu"),
        Node("gpu-3", "worker", settings_from_data("gpu-3", {"cluster_address": "10.0.0.11", "gpu": "nvidia"}), "gpu"),
    ]
    assert gpu_job_problems(nodes, {"10.0.0.9": "0", "10.0.0.10": ""}) == [
        "gpu-2 (group gpu): the GPU task ran without CUDA_VISIBLE_DEVICES (it saw no GPU)",
        "gpu-3 (group gpu): no task asking for a GPU ran there",
    ]


# Every host a closed port on loopback: the head never answers, so Ray's view is UNKNOWN.
GROUPED_INVENTORY = """
_closed = {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, "dashboard_access_url": "http://127.0.0.1:{port}"}}
head = [("head", dict(_closed, cluster_address="10.0.0.1"))]
workers = [("cpu-1", dict(_closed, cluster_address="10.0.0.2")), ("gpu-1", dict(_closed, cluster_address="10.0.0.3"))]
gpu = (["gpu-1"], {{"gpu": "nvidia", "ray_resources": {{"big": 4}}}})
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_apis_nodes_and_raydeploy_status_show_each_nodes_group_and_offers(tmp_path):
    inventory = tmp_path / "grouped.py"
    inventory.write_text(GROUPED_INVENTORY.format(port=closed_port()))
    app = create_app(str(inventory), tmp_path / "state")
    token = TokenStore(app.state.store).create("viewer", "viewer", "test")[1]
    answer = TestClient(app).get("/api/v1/nodes", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    nodes = {node["name"]: node for node in answer.json()}
    assert {name: node["group"] for name, node in nodes.items()} == {"head": "head", "cpu-1": "workers", "gpu-1": "gpu"}
    assert nodes["gpu-1"]["offers"]["resources"] == {"big": 4.0} and nodes["gpu-1"]["offers"]["gpu"] == "nvidia"
    assert nodes["gpu-1"]["offers"]["image"] == "rayproject/ray:2.60.0-py311-gpu"
    result = CliRunner().invoke(status, ["-i", str(inventory), "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    assert re.search(
        r"node: gpu-1\s+group gpu\s+cpus all, gpus every one nvidia-smi lists \(nvidia\), resources", result.output
    )
    assert re.search(
        r"node: cpu-1\s+group workers\s+cpus all, gpus 0, image rayproject/ray:2.60.0-py311-cpu", result.output
    )


def test_the_console_shows_each_nodes_group_and_what_it_offers_ray(tmp_path):
    from tests.unit.test_console import sign_in

    inventory = tmp_path / "grouped.py"
    inventory.write_text(GROUPED_INVENTORY.format(port=closed_port()))
    app = create_app(str(inventory), tmp_path / "state")
    client = TestClient(app, raise_server_exceptions=False)
    sign_in(client, TokenStore(app.state.store).create("viewer", "viewer", "test")[1])
    page = client.get("/nodes/gpu-1")
    assert page.status_code == 200, page.text[:500]
    assert '<dd id="group">gpu</dd>' in page.text
    offers = re.search(r'<dd id="offers">(.*?)</dd>', page.text, re.S)[1]
    assert "all CPUs" in offers and "(nvidia)" in offers and "big: 4.0" in offers and "py311-gpu" in offers, offers
    table = client.get("/live/dashboard").text
    assert re.search(r'href="/nodes/gpu-1">gpu-1</a></td><td>worker</td><td class="group">gpu</td>', table), table
    assert '<td class="resources">big: 4.0</td>' in table


def test_the_dcgm_exporter_runs_on_all_gpus_as_nvidia_documents_it():
    from deploys.monitoring import dcgm_exporter_spec

    spec = dcgm_exporter_spec(settings(gpu="nvidia"))
    run = shlex.split(spec.run_command())
    assert run[-1] == "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.5-3.4.1-ubuntu22.04"
    assert {"--runtime=nvidia", "--gpus=all", "--cap-add=SYS_ADMIN", "--env=DCGM_EXPORTER_LISTEN=:9400"} <= set(run)
