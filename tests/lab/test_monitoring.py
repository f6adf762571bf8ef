"""The monitoring stack on the deployed lab: real Prometheus, node-exporter and Ray; promtool on the real rules.

Grafana and cAdvisor cannot run here (no image offline): their container specs are checked from a
dry run against a lab host, their files by rendering (tests/unit/test_monitoring_config.py).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from deploys.monitoring_config import alert_rules, dashboards
from tests.clusters import make_cluster
from tests.lab.conftest import DeployedCluster, changed_operations, deploy, grand_total

PROMETHEUS_IMAGE = "raydeploy-lab/prometheus:v2.42.0"
PROMTOOL_TESTS = Path(__file__).resolve().parents[1] / "promtool" / "alerts_test.yml"
# cAdvisor's metrics our containers dashboard uses, as cAdvisor documents them
# (docs/storage/prometheus.md); no cAdvisor runs here to scrape.
CADVISOR_METRICS = {
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_network_receive_bytes_total",
    "container_network_transmit_bytes_total",
    "container_start_time_seconds",
    "container_last_seen",
}
# What Ray's default dashboard charts that a lab without work or accelerators never exposes:
# task/actor/placement-group series appear with the first workload; GPU and TPU ones never on CPUs.
RAY_METRICS_ONLY_UNDER_LOAD = re.compile(
    r"^ray_(tasks|actors|placement_groups|io_cluster|memory_manager_worker_eviction_total"
    r"|node_manager_unexpected_worker_failure_total|component_gpu_.*|node_gpu.*|node_gram_.*|tpu_.*)$"
)


def metric_names(expressions: list[str], prefix: str) -> set[str]:
    return {name for expression in expressions for name in re.findall(rf"\b({prefix}[a-zA-Z0-9_]+)", expression)}


def expressions(board: dict) -> list[str]:
    found: list[str] = []

    def walk(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                found.append(inner) if key == "expr" else walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(board)
    return found


def wait_for(predicate, timeout_s: float, what: str, interval: float = 2):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout_s} s (last: {last})")


def test_promtool_checks_the_alert_rules_and_runs_a_firing_and_a_quiet_case_for_each(engine, lab, tmp_path):
    # `lab` built the lab's images, among them Prometheus with its promtool.
    (tmp_path / "raydeploy.yml").write_text(alert_rules(make_cluster()))
    shutil.copy(PROMTOOL_TESTS, tmp_path / "alerts_test.yml")
    promtool = ["run", "--rm", "--user=0", "--entrypoint=/bin/promtool", f"--volume={tmp_path}:/work:ro"]
    promtool += ["--workdir=/work", PROMETHEUS_IMAGE]
    checked = engine.run([*promtool, "check", "rules", "raydeploy.yml"])
    assert "SUCCESS: 6 rules found" in checked.stdout + checked.stderr
    tested = engine.run([*promtool, "test", "rules", "alerts_test.yml"], check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tests = PROMTOOL_TESTS.read_text()
    for alert in (
        "HostDown",
        "RayNodeLost",
        "RayGCSUnhealthy",
        "DiskAlmostFull",
        "MemoryPressure",
        "ContainerRestarting",
    ):
        cases = re.findall(rf"alertname: {alert}\n\s+exp_alerts:(.*?)(?=\n\s+- eval_time|\n\n|\Z)", tests, re.S)
        assert any(case.strip() == "[]" for case in cases), f"{alert} has no quiet case"
        assert any(case.strip() != "[]" for case in cases), f"{alert} has no firing case"


def test_the_deployed_config_passes_promtool_check_config(deployed: DeployedCluster):
    checked = deployed.lab.host("head").run(
        "docker exec prometheus promtool check config /etc/prometheus/prometheus.yml"
    )
    assert checked.rc == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout + checked.stderr


def test_prometheus_has_every_node_exporter_and_every_ray_node_up(deployed: DeployedCluster):
    def up_targets():
        targets = deployed.targets()
        up = {(t["labels"]["job"], t["labels"].get("node")) for t in targets if t["health"] == "up"}
        wanted = {(job, node) for job in ("node", "ray") for node in ("head", "worker-1", "worker-2")}
        return up if wanted <= up and ("prometheus", "head") in up else None

    wait_for(up_targets, 90, "every node-exporter and Ray node up in Prometheus")
    ray_addresses = {t["labels"]["instance"] for t in deployed.targets() if t["labels"]["job"] == "ray"}
    state = deployed.lab.state()
    assert {f"{host.cluster_address}:8080" for host in state.hosts} <= ray_addresses


def test_a_ray_metric_has_one_series_per_ray_node(deployed: DeployedCluster):
    series = wait_for(
        lambda: (found := deployed.query("ray_node_cpu_count")) and len(found) == 3 and found,
        90,
        "ray_node_cpu_count for each of the three nodes",
    )
    assert sorted(row["metric"]["node"] for row in series) == ["head", "worker-1", "worker-2"]
    assert all(row["value"][1] == "2" for row in series)  # ray_num_cpus: 2 on each lab host


def test_dashboards_chart_only_metrics_the_exporters_and_ray_expose(deployed: DeployedCluster):
    wait_for(lambda: len(deployed.query('up{job="node"} == 1')) == 3, 90, "node-exporters up")
    live = set(deployed.query_names())
    hosts = metric_names(expressions(json.loads(dashboards()["hosts.json"])), "node_")
    assert hosts and hosts <= live, f"not exposed by node-exporter: {sorted(hosts - live)}"
    containers = metric_names(expressions(json.loads(dashboards()["containers.json"])), "container_")
    assert containers == CADVISOR_METRICS
    # Ray's own dashboards, as the head wrote them for Grafana.
    head = deployed.lab.host("head")
    board = json.loads(
        head.check_output("cat /tmp/ray/session_latest/metrics/grafana/dashboards/default_grafana_dashboard.json")
    )
    assert "datasource" in {variable["name"] for variable in board["templating"]["list"]}
    used = metric_names(expressions(board), "ray_")
    missing = {name for name in used - live if not RAY_METRICS_ONLY_UNDER_LOAD.match(name)}
    assert used & live and not missing, f"Ray's dashboard charts metrics Prometheus does not have: {sorted(missing)}"


def test_components_off_are_reported_as_off_with_the_inventorys_reason(deployed: DeployedCluster):
    result = deploy(deployed.lab, "deploys/monitoring-deployment.py", "--dry")
    for component, hosts in (("grafana", ["head"]), ("cadvisor", ["head", "worker-1", "worker-2"])):
        for name in hosts:
            assert re.search(
                rf"\[{name}\]\s+monitoring-deployment: {component} is off: its image cannot be had", result.output
            )
    assert grand_total_dry_changes(result.output) == 0, result.output


def grand_total_dry_changes(output: str) -> int:
    rows = re.findall(r"^\s{4}(\S.*?)\s{2,}(\d+ \(.*?\)|-)\s{2,}", output, flags=re.MULTILINE)
    return sum(1 for _, change in rows if change != "-")


def test_grafana_and_cadvisor_dry_run_shows_their_exact_containers_and_leaves_the_hosts_alone(deployed):
    result = deploy(
        deployed.lab, "deploys/ray.py", "--dry", "--data", "grafana_enabled=true", "--data", "cadvisor_enabled=true"
    )
    output = result.output
    grafana = re.search(r"\[head\]\s+will create container grafana: (docker run .*)", output)
    assert grafana, output
    command = grafana.group(1)
    for part in (
        "--network=host",
        "--restart=unless-stopped",
        "--label=raydeploy.component=grafana",
        "--env=GF_AUTH_ANONYMOUS_ENABLED=false",
        "--env=GF_SECURITY_ALLOW_EMBEDDING=true",
        "--env=GF_SECURITY_ADMIN_PASSWORD__FILE=/run/raydeploy/grafana-admin-password",
        "--volume=/etc/raydeploy/grafana-admin-password:/run/raydeploy/grafana-admin-password:ro",
        "--volume=/etc/raydeploy/grafana/provisioning:/etc/grafana/provisioning:ro",
        "--volume=/tmp/ray:/tmp/ray:ro",
        "'--health-cmd=wget -q -O /dev/null http://127.0.0.1:3000/api/health'",
    ):
        assert part in command, part
    assert command.endswith("grafana/grafana:10.4.2")
    password = (deployed.lab.home / deployed.lab.name / "secrets" / "grafana-admin-password").read_text().strip()
    assert password not in output and "admin123" not in output
    for name in ("head", "worker-1", "worker-2"):
        cadvisor = re.search(rf"\[{name}\]\s+will create container cadvisor: (docker run .*)", output)
        assert cadvisor and "--port=8081" in cadvisor.group(1) and "--privileged" in cadvisor.group(1)
    # The Ray head is told where Grafana is, which changes its spec: the plan says so.
    head = re.search(r"\[head\]\s+will recreate container ray-head \(its spec changed\): (docker run .*)", output)
    assert head and "--env=RAY_GRAFANA_HOST=http://10.213." in head.group(1), output
    assert "--env=RAY_PROMETHEUS_HOST=http://10.213." in head.group(1)
    # Nothing ran: no Grafana files on the head.
    assert not deployed.lab.host("head").file("/etc/raydeploy/grafana").exists


def last_reload(deployed: DeployedCluster) -> float:
    """When Prometheus last loaded its config, from its own /metrics (now, not as last scraped)."""
    metrics = requests.get(f"{deployed.prometheus}/metrics", timeout=10).text
    return float(re.search(r"^prometheus_config_last_reload_success_timestamp_seconds (\S+)$", metrics, re.M).group(1))


def test_a_scrape_setting_change_reloads_prometheus_and_keeps_its_data(deployed: DeployedCluster):
    before = deployed.container("head", "prometheus")
    wait_for(lambda: deployed.query('up{job="prometheus"}'), 60, "Prometheus scraping itself")
    time.sleep(6)
    earlier = time.time() - 5
    reloads = last_reload(deployed)
    result = deploy(deployed.lab, "deploys/monitoring-deployment.py", "--data", "prometheus_scrape_interval=7s")
    assert grand_total(result.output)[1] == 0, result.output
    changed = changed_operations(result.output)
    assert any("prometheus.yml" in name for name in changed), changed
    assert any("Reload Prometheus" in name for name in changed), changed
    assert not any("Prometheus container" in name for name in changed), changed
    after = deployed.container("head", "prometheus")
    assert (after["Id"], after["State"]["StartedAt"]) == (before["Id"], before["State"]["StartedAt"])
    config = deployed.lab.host("head").file("/etc/raydeploy/prometheus/prometheus.yml").content_string
    assert "scrape_interval: 7s" in config
    assert last_reload(deployed) > reloads
    # Samples from before the reload are still there.
    assert deployed.query_at('up{job="prometheus"}', earlier), "samples from before the reload are gone"
    # A scrape that failed since the reload (a loaded machine) would rightly make the re-run wait for it.
    deployed.wait_until_settled(every_target=True)
    again = deploy(deployed.lab, "deploys/monitoring-deployment.py", "--data", "prometheus_scrape_interval=7s")
    assert grand_total(again.output) == (0, 0), changed_operations(again.output)
    deploy(deployed.lab, "deploys/monitoring-deployment.py")


def firing(deployed: DeployedCluster, name: str) -> dict | None:
    return next((a for a in deployed.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"), None)


def test_stopping_a_worker_fires_ray_node_lost_and_it_clears_when_the_worker_is_back(deployed: DeployedCluster):
    worker = deployed.lab.host("worker-2")
    wait_for(lambda: len(deployed.query("ray_node_cpu_count")) == 3, 90, "three Ray nodes in Prometheus")
    worker.check_output("docker stop ray-worker")
    try:
        started = time.monotonic()
        # Pending while fewer nodes are alive, firing once that has lasted alert_ray_node_lost_for (1m).
        alert = wait_for(lambda: firing(deployed, "RayNodeLost"), 180, "RayNodeLost firing")
        assert float(alert["value"]) == 2 and alert["labels"]["severity"] == "critical", alert
        print(f"RayNodeLost firing {time.monotonic() - started:.0f} s after the worker stopped")
    finally:
        worker.check_output("docker start ray-worker")
    deployed.wait_for_alive(3)
    wait_for(
        lambda: not any(a["labels"]["alertname"] == "RayNodeLost" for a in deployed.alerts()),
        120,
        "RayNodeLost cleared",
    )


@pytest.mark.parametrize("node", ["head", "worker-1", "worker-2"])
def test_node_exporter_runs_read_only_with_a_health_check(deployed: DeployedCluster, node):
    container = deployed.container(node, "node-exporter")
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["Config"]["Labels"]["raydeploy.component"] == "node-exporter"
    assert all(not mount["RW"] for mount in container["Mounts"])
    assert container["Config"]["Healthcheck"]["Test"][-1].startswith("wget")
