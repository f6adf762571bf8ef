"""The pure parts of what keeps a deploy quick: which images each host pulls in one go, and Nagle off."""

from __future__ import annotations

import json
import socket
from types import SimpleNamespace

from deploys.components import monitoring_components
from deploys.connection import send_without_delay
from deploys.containers import _pull
from deploys.monitoring import monitoring_images
from deploys.ray_cluster import ray_images
from tests.clusters import make_cluster

RAY = "rayproject/ray:2.60.0-py311-cpu"


def test_the_head_pulls_ray_and_redis_together_and_a_worker_only_ray():
    cluster = make_cluster(workers=1)
    assert ray_images(cluster.head) == [RAY, "redis:7.0"]
    assert ray_images(cluster.workers[0]) == [RAY]
    assert ray_images(make_cluster(workers=1, redis_enabled=False).head) == [RAY]


def test_each_host_pulls_the_images_of_the_monitoring_components_it_runs():
    cluster = make_cluster(workers=1, grafana_enabled=False, cadvisor_enabled=False)
    head, worker = cluster.head, cluster.workers[0]
    assert monitoring_images(head.settings, monitoring_components(head, cluster)) == [
        "prom/node-exporter:v1.5.0",
        "prom/prometheus:v2.42.0",
        "prom/alertmanager:v0.25.0",
    ]
    assert monitoring_images(worker.settings, monitoring_components(worker, cluster)) == ["prom/node-exporter:v1.5.0"]


def test_a_failed_pull_names_its_image_and_fails():
    command = _pull("registry.example:5000/team/ray:2.60.0")
    assert command.startswith("( docker pull --quiet registry.example:5000/team/ray:2.60.0 ||")
    assert "could not pull registry.example:5000/team/ray:2.60.0" in command
    assert command.endswith("exit 1; } )")


def test_nagle_is_turned_off_on_a_tcp_connection_and_other_connections_are_left_alone():
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        transport = SimpleNamespace(sock=client)
        ssh_host = SimpleNamespace(connector=SimpleNamespace(client=SimpleNamespace(get_transport=lambda: transport)))
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert send_without_delay(ssh_host) is True
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    assert send_without_delay(SimpleNamespace(connector=SimpleNamespace())) is False  # @local, @docker


def test_prometheus_targets_report_every_unhealthy_target_not_only_missing_nodes():
    from facts.prometheus import PrometheusTargets

    answer = {
        "data": {
            "activeTargets": [
                {"labels": {"job": "ray", "node": "head"}, "health": "up", "scrapeUrl": "http://10.0.0.1:8080/metrics"},
                {
                    "labels": {"job": "ray", "node": "head"},
                    "health": "down",
                    "scrapeUrl": "http://10.0.0.1:44227/metrics",
                    "lastError": "connection refused",
                },
                {
                    "labels": {"job": "node", "node": "worker-1"},
                    "health": "unknown",
                    "scrapeUrl": "http://10.0.0.2:9100",
                },
            ]
        }
    }
    found = PrometheusTargets().process([json.dumps(answer)])
    assert found["up"] == {"ray": ["head"]}
    assert found["down"] == [
        "ray/head http://10.0.0.1:44227/metrics: connection refused",
        "node/worker-1 http://10.0.0.2:9100: unknown",
    ]
    assert PrometheusTargets().process(["{}"]) == {"up": {}, "down": []}
