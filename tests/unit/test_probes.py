"""The host probes' parsers, on output captured from a real lab (tests/unit/fixtures/capture.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pyinfra.facts.docker import DockerContainers, DockerImages

from deploys.cleanup import Leftover
from deploys.docker_engine import sources_line
from deploys.host_scripts import python_script
from deploys.prerequisites import container_of, port_holder
from deploys.scripts.polling import wait_until
from deploys.scripts.wait_prometheus_targets import not_scraped
from deploys.scripts.wait_ray_nodes import not_ready
from facts.containers import container_views, image_ids
from facts.prometheus import PrometheusTargets
from facts.prometheus_answers import asked_again_if_unsettled, describe_down, targets
from facts.ray import RayNodes, RayStatus
from facts.ray_answers import alive_nodes, status_active_nodes, status_total
from facts.resources import ListeningPorts, tcp_holders, tcp_listeners

FIXTURES = Path(__file__).parent / "fixtures"
HEAD, WORKER_1, WORKER_2 = "10.213.1.10", "10.213.1.11", "10.213.1.12"
EXPECTED = {HEAD: ("head", 44217), WORKER_1: ("worker-1", 44217), WORKER_2: ("worker-2", 44217)}


def captured(name: str) -> str:
    return (FIXTURES / name).read_text()


def lines(name: str) -> list[str]:
    return captured(name).splitlines()


def test_alive_nodes_reads_every_alive_node_of_the_node_table_with_its_resources():
    nodes = alive_nodes(captured("ray_nodes.json"))
    assert set(nodes) == {HEAD, WORKER_1, WORKER_2}
    assert {node["resources"]["CPU"] for node in nodes.values()} == {2.0}
    assert nodes[HEAD]["resources"]["object_store_memory"] == 314572800.0
    assert all(len(node["node_id"]) == 56 for node in nodes.values())
    assert RayNodes().process(lines("ray_nodes.json")) == nodes


def test_alive_nodes_tells_an_answer_that_is_not_the_node_table_apart_from_an_empty_one():
    assert alive_nodes("{}") is None
    assert alive_nodes("curl: (7) Failed to connect") is None
    assert alive_nodes('{"data": {"result": {"result": []}}}') == {}
    assert RayNodes().process(["{}"]) == {}


def test_ray_status_lists_the_same_node_ids_as_the_node_table_once_settled():
    active = status_active_nodes(captured("ray_status.json"))
    assert active == {node["node_id"] for node in alive_nodes(captured("ray_nodes.json")).values()}
    assert RayStatus().process(lines("ray_status.json")) == active
    assert status_active_nodes("{}") is None


def test_the_ray_wait_ends_only_when_ray_status_agrees_with_the_node_table():
    alive = alive_nodes(captured("ray_nodes.json"))
    assert not_ready(EXPECTED, alive, status_active_nodes(captured("ray_status.json")), set(EXPECTED)) == []
    # Captured right after the workers restarted: the node table has all three, `ray status` only the head.
    lagging = alive_nodes(captured("ray_nodes_lagging.json"))
    assert set(lagging) == {HEAD, WORKER_1, WORKER_2}
    missing = not_ready(EXPECTED, lagging, status_active_nodes(captured("ray_status_lagging.json")), set(EXPECTED))
    assert missing == [
        f"worker-1 ({WORKER_1}) not yet in `ray status`",
        f"worker-2 ({WORKER_2}) not yet in `ray status`",
    ]


def test_the_ray_wait_names_dead_nodes_silent_metrics_and_ids_ray_status_still_lists():
    alive = alive_nodes(captured("ray_nodes.json"))
    active = status_active_nodes(captured("ray_status.json"))
    without_worker_2 = {address: node for address, node in alive.items() if address != WORKER_2}
    assert not_ready(EXPECTED, without_worker_2, active, {HEAD, WORKER_1}) == [
        f"worker-2 ({WORKER_2}) not alive",
        f"`ray status` still lists node {alive[WORKER_2]['node_id'][:12]}, not alive",
    ]
    assert not_ready(EXPECTED, alive, active, {HEAD, WORKER_2}) == [f"worker-1 ({WORKER_1}: metrics port 44217)"]
    assert len(not_ready(EXPECTED, alive, None, set(EXPECTED))) == 3


def test_the_ray_wait_goes_on_while_ray_status_counts_the_cpus_of_nodes_that_are_gone():
    alive = alive_nodes(captured("ray_nodes.json"))
    settled = captured("ray_status.json")
    cpus = status_total(settled, "CPU")
    assert cpus == sum(node["resources"]["CPU"] for node in alive.values())
    assert not_ready(EXPECTED, alive, status_active_nodes(settled), set(EXPECTED), cpus) == []
    # Seen on the lab right after a recreate with one CPU a node: three nodes listed, 7 CPUs counted.
    stale = settled.replace(f"0.0/{cpus:.1f} CPU", "0.0/7.0 CPU")
    assert status_total(stale, "CPU") == 7.0
    assert not_ready(EXPECTED, alive, status_active_nodes(stale), set(EXPECTED), status_total(stale, "CPU")) == [
        f"`ray status` counts 7 CPUs, the alive nodes have {cpus:g}"
    ]
    assert status_total("{}") is None


def test_prometheus_targets_are_read_with_their_job_node_health_and_last_scrape():
    found = targets(captured("prometheus_targets.json"))
    assert {(t["job"], t["node"]) for t in found} >= {("ray", "worker-1"), ("node", "worker-2"), ("prometheus", "head")}
    assert {t["health"] for t in found} == {"up"}
    assert all(t["last_scrape"].startswith("20") for t in found)
    fact = PrometheusTargets().process(lines("prometheus_targets.json"))
    assert fact["down"] == [] and sorted(fact["up"]["node"]) == ["head", "worker-1", "worker-2"]


@pytest.mark.parametrize(("fixture", "asked"), [("prometheus_targets.json", 1), ("prometheus_targets_down.json", 2)])
def test_a_target_found_down_is_asked_about_again_a_scrape_later_before_it_counts(tmp_path, fixture, asked):
    # The real Prometheus answers (captured): the shell's pattern must find a down target in its compact JSON.
    count = tmp_path / "asked"
    ask = f"echo x >> {count}; cat {FIXTURES / fixture}"
    output = subprocess.run(["sh", "-c", asked_again_if_unsettled(ask, 1)], capture_output=True, text=True, check=True)
    assert len(count.read_text().splitlines()) == asked
    assert json.loads(output.stdout) == json.loads(captured(fixture))
    assert asked_again_if_unsettled(ask, 0) == ask


def test_a_target_prometheus_cannot_scrape_is_described_with_its_error():
    down = [t for t in targets(captured("prometheus_targets_down.json")) if t["health"] != "up"]
    assert [describe_down(t) for t in down] == [
        f'node/worker-2 http://{WORKER_2}:9100/metrics: Get "http://{WORKER_2}:9100/metrics": '
        f"dial tcp {WORKER_2}:9100: connect: connection refused"
    ]
    assert PrometheusTargets().process(lines("prometheus_targets_down.json"))["down"] == [describe_down(down[0])]
    assert PrometheusTargets().process(["{}"]) == {"up": {}, "down": []}


def test_the_prometheus_wait_wants_every_target_up_and_scraped_after_a_reload():
    wanted = [("node", "head"), ("node", "worker-2"), ("ray", "worker-1")]
    assert not_scraped(wanted, targets(captured("prometheus_targets.json"))) == []
    assert not_scraped(wanted, targets(captured("prometheus_targets.json")), since="2099-01-01T00:00:00") == [
        "node on head",
        "node on worker-2",
        "ray on worker-1",
    ]
    missing = not_scraped(wanted, targets(captured("prometheus_targets_down.json")))
    assert missing == ["node on worker-2", "ray on worker-1", f"node/worker-2 http://{WORKER_2}:9100/metrics (down)"]


def test_containers_are_read_from_pyinfras_docker_inspect_fact():
    found = container_views(DockerContainers().process(lines("docker_containers.json")))
    assert set(found) == {"prometheus", "node-exporter", "ray-head", "ray-redis"}
    head = found["ray-head"]
    assert head["running"] and head["status"] == "running" and head["health"] == "healthy"
    assert head["image"] == "rayproject/ray:2.60.0-py311-cpu" and head["restart_policy"] == "unless-stopped"
    assert head["labels"]["raydeploy.component"] == "ray-head" and len(head["labels"]["raydeploy.spec"]) == 16
    assert container_views(None) == {}


def test_images_are_read_by_tag_from_pyinfras_image_inspect_fact():
    found = image_ids(DockerImages().process(lines("docker_images.json")))
    assert "rayproject/ray:2.60.0-py311-cpu" in found and "redis:7.0" in found
    assert all(image_id.startswith("sha256:") for image_id in found.values())
    # An image pinned by digest (what a rollback to the exact bytes names) is present by that reference too.
    digest = "sha256:d1c6e1522669fb4906f11c6247546de4cfc54b686cd807554ae49d8ad629fa44"
    ray = found["rayproject/ray:2.60.0-py311-cpu"]
    assert found[f"rayproject/ray@{digest}"] == found[f"rayproject/ray:2.60.0-py311-cpu@{digest}"] == ray
    assert f"redis:7.0@{digest}" not in found


def test_listening_tcp_ports_are_read_with_pyinfras_ports_parser():
    fact = ListeningPorts()
    assert fact.command().startswith("ss -lpuntn || true;")
    listening = tcp_listeners(fact.process(lines("ss_ports.txt")))
    assert listening[6379] == ["gcs_server"] and listening[22] == ["sshd"] and listening[9090] == ["prometheus"]
    assert listening[10001] == ["python3"]  # listed twice (two addresses), named once
    assert not any(port < 1024 and port != 22 for port in listening)
    assert all(entry["protocol"] == "tcp" for entry in fact.process(lines("ss_ports.txt")) if entry["port"] == 6379)


def test_each_port_holder_is_known_by_its_container_from_its_cgroup():
    holders = tcp_holders(ListeningPorts().process(lines("ss_ports.txt")))
    containers = container_views(DockerContainers().process(lines("docker_containers.json")))
    assert len(holders[10001]) == 1, "a port on two addresses is one holder"
    by_port = {port: {container_of(entry, containers) for entry in found} for port, found in holders.items()}
    assert by_port[6379] == by_port[8265] == by_port[10001] == {"ray-head"}
    assert by_port[6380] == {"ray-redis"} and by_port[9090] == {"prometheus"}
    assert by_port[22] == {None}  # sshd runs on the host
    assert holders[8265][0]["parents"], "a Ray process's parents are known (cleanup stops their root)"


def test_a_port_held_by_a_leftover_is_removed_by_cleanup_and_anything_else_is_a_conflict():
    holders = tcp_holders(ListeningPorts().process(lines("ss_ports.txt")))
    containers = container_views(DockerContainers().process(lines("docker_containers.json")))
    gcs = holders[6379][0]
    legacy = Leftover("container", "ray-head", "from an older deployment (image rayproject/ray:2.60.0-py311-cpu)")
    assert port_holder(gcs, containers, [legacy]) == (
        "container ray-head from an older deployment (image rayproject/ray:2.60.0-py311-cpu)",
        True,
    )
    assert port_holder(gcs, containers, []) == (
        "container ray-head (image rayproject/ray:2.60.0-py311-cpu), which cleanup-existing leaves alone",
        False,
    )
    bare = {**gcs, "container": None, "parents": [1599, 1580]}
    assert port_holder(bare, {}, [Leftover("process", "1580", "Ray outside a container")])[1] is True
    assert port_holder(bare, {}, [Leftover("process", "4242", "Ray outside a container")]) == (
        "process gcs_server (pid 1791)",
        False,
    )
    proxy = {"port": 8265, "process": "docker-proxy", "pid": 7, "container": None, "parents": []}
    published = {"dashboard": {**containers["ray-head"], "id": "other", "published": [8265]}}
    assert container_of(proxy, published) == "dashboard"


def test_the_docker_ce_repository_line_names_the_hosts_architecture():
    assert sources_line("debian", "bookworm", "arm64") == (
        "deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/debian bookworm stable\n"
    )


def test_a_host_script_runs_with_the_modules_it_imports_and_leaves_nothing_behind(tmp_path):
    # No Prometheus container here: the probe answers '{}', and with nothing wanted the wait ends at once.
    command = python_script(
        "deploys/scripts/wait_prometheus_targets.py",
        ("facts/prometheus_answers.py", "deploys/scripts/polling.py"),
        [json.dumps([]), "9090", "5"],
    )
    assert "def not_scraped(" in command and "def targets(" in command  # the plan shows what runs
    ran = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, env={"TMPDIR": str(tmp_path), "PATH": os.environ["PATH"]}
    )
    assert ran.returncode == 0, ran.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_host_script_that_times_out_fails_naming_what_is_missing(tmp_path):
    command = python_script(
        "deploys/scripts/wait_prometheus_targets.py",
        ("facts/prometheus_answers.py", "deploys/scripts/polling.py"),
        [json.dumps([["node", "head"]]), "9090", "0"],
    )
    ran = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, env={"TMPDIR": str(tmp_path), "PATH": os.environ["PATH"]}
    )
    assert ran.returncode == 1
    assert ran.stderr.strip() == "Prometheus does not scrape after 0 s: node on head"
    assert list(tmp_path.iterdir()) == []


def test_wait_until_asks_again_until_nothing_is_missing():
    answers = [["worker-1", "worker-2"], ["worker-2"], []]
    assert wait_until(lambda: answers.pop(0), timeout_s=5, failure="not ready", interval_s=0.01) == 0
    assert answers == []


def test_a_node_killed_without_a_word_and_its_replacement_both_alive_the_later_one_is_the_node_there():
    answer = json.loads(captured("ray_nodes.json"))
    rows = answer["data"]["result"]["result"]
    worker_1 = next(row for row in rows if row["node_ip"] == WORKER_1)
    replacement = {**worker_1, "node_id": "f" * 56, "start_time_ms": worker_1["start_time_ms"] + 60_000}
    for order in ([*rows, replacement], [replacement, *rows]):
        answer["data"]["result"]["result"] = order
        assert alive_nodes(json.dumps(answer))[WORKER_1]["node_id"] == "f" * 56


def test_the_ray_wait_does_not_count_a_recreated_node_by_the_id_it_had_before():
    alive = alive_nodes(captured("ray_nodes.json"))
    active = status_active_nodes(captured("ray_status.json"))
    old = {WORKER_1: alive[WORKER_1]["node_id"]}
    assert not_ready(EXPECTED, alive, active, set(EXPECTED), replaced=old) == [
        f"worker-1 ({WORKER_1}) not back yet: the head still lists the node its old container ran"
    ]
    back = {**alive, WORKER_1: {**alive[WORKER_1], "node_id": "f" * 56}}
    assert not_ready(EXPECTED, back, active | {"f" * 56}, set(EXPECTED), replaced=old) == [
        f"`ray status` still lists node {old[WORKER_1][:12]}, not alive"
    ]
    assert not_ready(EXPECTED, back, active - {old[WORKER_1]} | {"f" * 56}, set(EXPECTED), replaced=old) == []
