"""The validation checks as pytest tests (see validate/conftest.py for how to run them)."""

from __future__ import annotations

from validate import gpu_checks, host_checks, http_checks, smoke
from validate.conftest import expect


def test_docker_installation(host, node):
    expect(host_checks.docker_installation(host, node))


def test_ray_deployment(host, node, cluster, secret_of):
    expect(host_checks.ray_deployment(host, node, cluster, secret_of))
    expect(gpu_checks.ray_gpus(host, node, cluster, secret_of))


def test_monitoring_deployment(host, node, cluster, secret_of):
    expect(host_checks.monitoring_deployment(host, node, cluster, secret_of))


def test_ray_dashboard(cluster, secret_of):
    expect(http_checks.ray_dashboard(cluster, secret_of))


def test_prometheus(cluster):
    expect(http_checks.prometheus(cluster))


def test_grafana(cluster, secret_of):
    expect(http_checks.grafana(cluster, secret_of))


def test_alertmanager(cluster):
    expect(http_checks.alertmanager(cluster))


def test_ray_smoke_job(cluster, secret_of):
    expect(smoke.smoke_job(cluster, secret_of))


def test_ray_gpu_job(cluster, secret_of):
    expect(gpu_checks.gpu_job(cluster, secret_of))
