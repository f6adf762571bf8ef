"""The monitoring stack's rendered files: valid YAML/JSON, the right targets, URLs and rules for the inventory."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from deploys.components import expected_containers, monitoring_components
from deploys.host_secrets import grafana_password_file
from deploys.monitoring import cadvisor_spec, grafana_spec, node_exporter_spec, prometheus_spec
from deploys.monitoring_config import (
    alert_rules,
    dashboards,
    grafana_dashboard_providers,
    grafana_datasources,
    prometheus_config,
)
from deploys.ray_cluster import metrics_environment
from deploys.settings import SettingsError, check_cluster, settings_from_data
from tests.clusters import make_cluster

ALERTS = {"HostDown", "RayNodeLost", "RayGCSUnhealthy", "DiskAlmostFull", "MemoryPressure", "ContainerRestarting"}


def jobs(config: str) -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(config)["scrape_configs"]}


def test_prometheus_scrapes_itself_every_exporter_and_ray_through_its_service_discovery():
    config = yaml.safe_load(prometheus_config(make_cluster()))
    assert config["global"] == {
        "scrape_interval": "15s",
        "evaluation_interval": "15s",
        "external_labels": {"cluster": "ray"},
    }
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    by_name = {job["job_name"]: job for job in config["scrape_configs"]}
    assert by_name["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:9090"], "labels": {"node": "head"}}]
    node_targets = {entry["labels"]["node"]: entry["targets"] for entry in by_name["node"]["static_configs"]}
    assert node_targets == {"head": ["10.0.0.1:9100"], "worker-1": ["10.0.0.2:9100"], "worker-2": ["10.0.0.3:9100"]}
    cadvisor_targets = [entry["targets"][0] for entry in by_name["cadvisor"]["static_configs"]]
    assert cadvisor_targets == ["10.0.0.1:8081", "10.0.0.2:8081", "10.0.0.3:8081"]
    (sd,) = by_name["ray"]["http_sd_configs"]
    assert sd["url"] == "http://10.0.0.1:8265/api/prometheus/sd"
    assert sd["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/ray-auth-token"}
    relabels = {rule["replacement"]: rule["regex"] for rule in by_name["ray"]["relabel_configs"]}
    assert relabels == {
        "head": r"10\.0\.0\.1:[0-9]+",
        "worker-1": r"10\.0\.0\.2:[0-9]+",
        "worker-2": r"10\.0\.0\.3:[0-9]+",
    }
    assert re.fullmatch(relabels["worker-1"], "10.0.0.2:8080") and not re.fullmatch(relabels["head"], "10.0.0.10:80")


def test_components_turned_off_are_not_scraped_and_ray_without_auth_needs_no_token():
    cluster = make_cluster(cadvisor_enabled=False, ray_auth_mode="disabled", prometheus_scrape_interval="5s")
    config = prometheus_config(cluster)
    by_name = jobs(config)
    assert "cadvisor" not in by_name
    assert "authorization" not in by_name["ray"]["http_sd_configs"][0]
    assert yaml.safe_load(config)["global"]["scrape_interval"] == "5s"
    quiet = make_cluster(node_exporter_enabled=False, cadvisor_enabled=False)
    assert set(jobs(prometheus_config(quiet))) == {"prometheus", "ray"}


def test_a_separate_monitoring_host_is_scraped_too_and_points_ray_at_itself():
    cluster = make_cluster(monitoring="mon")
    by_name = jobs(prometheus_config(cluster))
    assert "10.0.0.100:9100" in [entry["targets"][0] for entry in by_name["node"]["static_configs"]]
    assert [rule["replacement"] for rule in by_name["ray"]["relabel_configs"]] == ["head", "worker-1", "worker-2"]
    environment = metrics_environment(cluster)
    assert environment["RAY_PROMETHEUS_HOST"] == "http://10.0.0.100:9090"
    assert environment["RAY_GRAFANA_HOST"] == "http://10.0.0.100:3000"
    assert environment["RAY_GRAFANA_IFRAME_HOST"] == "http://10.0.0.100:3000"
    # Ray writes its dashboards on the head only: Grafana elsewhere provisions ours alone.
    providers = yaml.safe_load(grafana_dashboard_providers(cluster))["providers"]
    assert [provider["name"] for provider in providers] == ["raydeploy"]


def test_the_ray_head_learns_where_prometheus_and_grafana_are_only_when_they_run():
    cluster = make_cluster(grafana_iframe_host="https://grafana.example.org")
    assert metrics_environment(cluster) == {
        "RAY_PROMETHEUS_HOST": "http://10.0.0.1:9090",
        "RAY_PROMETHEUS_NAME": "Prometheus",
        "RAY_GRAFANA_HOST": "http://10.0.0.1:3000",
        "RAY_GRAFANA_IFRAME_HOST": "https://grafana.example.org",
    }
    assert metrics_environment(make_cluster(grafana_enabled=False, prometheus_enabled=False)) == {}


def test_alert_rules_cover_every_alert_with_the_inventorys_node_count_and_thresholds():
    rules = yaml.safe_load(alert_rules(make_cluster(workers=4, alert_disk_free_percent=15)))
    (group,) = rules["groups"]
    by_name = {rule["alert"]: rule for rule in group["rules"]}
    assert set(by_name) == ALERTS
    assert by_name["RayNodeLost"]["expr"].endswith("< 5")
    assert by_name["DiskAlmostFull"]["expr"].endswith("< 15")
    assert "{{ $labels.node }}" in by_name["HostDown"]["annotations"]["summary"]
    for rule in group["rules"]:
        assert rule["labels"]["severity"] in ("critical", "warning")


def test_grafana_gets_the_prometheus_datasource_and_both_dashboard_folders_on_the_head():
    cluster = make_cluster()
    (source,) = yaml.safe_load(grafana_datasources(cluster))["datasources"]
    assert source["url"] == "http://10.0.0.1:9090"
    assert (source["name"], source["uid"], source["type"], source["isDefault"]) == (
        "Prometheus",
        "prometheus",
        "prometheus",
        True,
    )
    providers = {
        p["name"]: p["options"]["path"] for p in yaml.safe_load(grafana_dashboard_providers(cluster))["providers"]
    }
    assert providers == {
        "raydeploy": "/var/lib/grafana/dashboards/raydeploy",
        "ray": "/tmp/ray/session_latest/metrics/grafana/dashboards",
    }


@pytest.mark.parametrize("name", ["hosts.json", "containers.json"])
def test_dashboards_are_valid_json_with_a_query_in_every_panel(name):
    board = json.loads(dashboards()[name])
    assert board["uid"].startswith("raydeploy-")
    assert {variable["name"] for variable in board["templating"]["list"]} == {"datasource", "node"}
    assert board["panels"]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(target["expr"] for target in panel["targets"])


def test_grafana_runs_without_anonymous_access_and_reads_its_password_from_a_mounted_file():
    cluster = make_cluster()
    password = grafana_password_file(cluster.head.settings, lambda name: "secret-grafana-pass")
    spec = grafana_spec(cluster.head, cluster, password, "provisioning")
    command = spec.run_command()
    assert "--env=GF_AUTH_ANONYMOUS_ENABLED=false" in command
    assert "--env=GF_SECURITY_ADMIN_PASSWORD__FILE=/run/raydeploy/grafana-admin-password" in command
    assert "--volume=/etc/raydeploy/grafana-admin-password:/run/raydeploy/grafana-admin-password:ro" in command
    assert "secret-grafana-pass" not in command and "admin123" not in command
    assert "--volume=/tmp/ray:/tmp/ray:ro" in command
    changed = grafana_spec(cluster.head, cluster, password, "other provisioning")
    assert changed.digest() != spec.digest()


def test_prometheus_config_changes_do_not_touch_its_container_spec_but_retention_does():
    settings = settings_from_data("head", {"cluster_address": "10.0.0.1"})
    scrape = settings_from_data("head", {"cluster_address": "10.0.0.1", "prometheus_scrape_interval": "5s"})
    assert prometheus_spec(settings).digest() == prometheus_spec(scrape).digest()
    sized = settings_from_data("head", {"cluster_address": "10.0.0.1", "prometheus_retention_size": "10GB"})
    assert "--storage.tsdb.retention.size=10GB" in prometheus_spec(sized).run_command()
    assert prometheus_spec(sized).digest() != prometheus_spec(settings).digest()


def test_exporters_mount_the_host_read_only():
    settings = settings_from_data("head", {"cluster_address": "10.0.0.1"})
    assert node_exporter_spec(settings).volumes == ("/:/host:ro,rslave",)
    assert all(":ro" in volume for volume in cadvisor_spec(settings).volumes)


def test_which_components_belong_where_and_what_final_validation_expects():
    cluster = make_cluster(grafana_enabled=False)
    head, worker = cluster.head, cluster.workers[0]
    assert monitoring_components(head, cluster) == {
        "node-exporter": True,
        "cadvisor": True,
        "prometheus": True,
        "grafana": False,
        "alertmanager": True,
    }
    assert monitoring_components(worker, cluster) == {"node-exporter": True, "cadvisor": True}
    assert expected_containers(head, cluster) == {
        "ray-head",
        "ray-redis",
        "node-exporter",
        "cadvisor",
        "prometheus",
        "alertmanager",
    }
    assert expected_containers(worker, cluster) == {"ray-worker", "node-exporter", "cadvisor"}


def test_monitoring_settings_are_checked():
    with pytest.raises(SettingsError) as error:
        settings_from_data(
            "head",
            {"prometheus_retention_time": "forever", "prometheus_retention_size": "10 gigs", "grafana_port": 0},
        )
    lines = str(error.value).splitlines()
    assert "head: prometheus_retention_time='forever' must be a duration like 30s, 5m, 15d" in lines
    assert "head: prometheus_retention_size='10 gigs' must be empty or a size like 512MB or 10GB" in lines
    assert "head: grafana_port=0 must be a port number, 1 to 65535" in lines


def test_monitoring_ports_clash_only_on_the_monitoring_host():
    def host(name, role, **data):
        return name, role, settings_from_data(name, {"cluster_address": f"10.0.0.{len(name)}", **data})

    with pytest.raises(SettingsError, match=r"head: grafana_port=9090 clashes with prometheus_port=9090"):
        check_cluster([host("head", "head", grafana_port=9090)])
    check_cluster([host("head", "head"), host("worker-1", "worker", grafana_port=9090)])
    with pytest.raises(SettingsError, match=r"group 'monitoring' may hold one host; found 2"):
        check_cluster([host("head", "head"), host("m1", "monitoring"), host("m22", "monitoring")], ["m1", "m22"])
