"""Taking over an earlier installation: hosts where the system raydeploy replaces runs its Ray and
monitoring containers, holding the ports raydeploy needs. A plain `raydeploy deploy` without a
terminal stops only for cleanup-existing's approval, then ends with a healthy cluster."""

from __future__ import annotations

import time

import pytest

from tests.lab.test_wrapper import RAY_IMAGE, raydeploy_runner

PROMETHEUS_IMAGE = "prom/prometheus:v2.42.0"


@pytest.fixture(scope="module")
def earlier(make_lab, tmp_path_factory):
    """A 1-worker lab with Docker installed and an earlier-style deployment running on it."""
    lab = make_lab("takeover")
    lab.up("--workers", "1")
    wrapper = raydeploy_runner({**lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path_factory.mktemp("takeover-state"))})
    wrapper("deploy", "--only", "docker-installation", "--auto-approve", check=True)
    head, worker = lab.host("head"), lab.host("worker-1")
    head_address = lab.state().head.cluster_address
    start = "docker run -d --network host --name"
    head.check_output(
        f"{start} ray_head {RAY_IMAGE} ray start --head --port=6379 --dashboard-host=0.0.0.0 "
        "--disable-usage-stats --block"
    )
    head.check_output(f"{start} prometheus {PROMETHEUS_IMAGE}")
    worker.check_output(f"{start} ray_worker {RAY_IMAGE} ray start --address={head_address}:6379 --block")
    wait_listening(head, [6379, 8265, 9090])
    return lab, wrapper


def wait_listening(host, ports: list[int], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listening = host.check_output("ss -ltnH")
        if all(f":{port} " in listening for port in ports):
            return
        time.sleep(2)
    raise AssertionError(f"the earlier deployment never listened on {ports}: {listening}")


NODE_EXPORTER_IMAGE = "prom/node-exporter:v1.5.0"


def test_a_port_held_by_a_container_cleanup_leaves_alone_is_a_conflict_naming_it(earlier):
    lab, wrapper = earlier
    worker = lab.host("worker-1")
    worker.check_output(f"docker run -d --network host --name host-metrics {NODE_EXPORTER_IMAGE}")
    try:
        wait_listening(worker, [9100])
        checked = wrapper("deploy", "--only", "prerequisites-check")
    finally:
        worker.run("docker rm -f host-metrics")
    assert checked.returncode == 1, checked.output
    assert (
        f"port 9100 (node_exporter_port) is already in use by container host-metrics (image {NODE_EXPORTER_IMAGE}), "
        "which cleanup-existing leaves alone; stop that container (docker stop NAME) if it is not needed, "
        "or change node_exporter_port" in checked.output
    )
    assert "ray_gcs_port) is already in use" not in checked.output  # the earlier deployment's are no conflict


def test_an_earlier_deployment_is_taken_over_stopping_only_for_the_approval(earlier):
    lab, wrapper = earlier
    wait_listening(lab.host("head"), [6379, 8265, 9090])  # the earlier deployment still holds its ports
    first = wrapper("deploy")
    assert first.returncode == 3, first.output  # awaiting an approval, nothing failed
    assert "prerequisites-check failed" not in first.output, first.output
    assert (
        "port 6379 (ray_gcs_port) is held by container ray_head from an older deployment "
        f"(image {RAY_IMAGE}): cleanup-existing will remove it after approval" in first.output
    ), first.output
    assert "port 9090 (prometheus_port) is held by container prometheus from an older deployment" in first.output
    assert "cleanup-existing needs an approval" in first.output, first.output
    names = lab.host("head").check_output("docker ps --format '{{.Names}}'").split()
    assert {"ray_head", "prometheus"} <= set(names), "nothing is removed before the approval"

    approved = wrapper("approve", "cleanup-existing", "--by", "alice", "--reason", "take over", "--acknowledge-risks")
    assert approved.returncode == 0, approved.output
    second = wrapper("deploy")
    assert second.returncode == 0, second.output
    assert "final-validation: done" in second.output
    head_names = set(lab.host("head").check_output("docker ps -a --format '{{.Names}}'").split())
    worker_names = set(lab.host("worker-1").check_output("docker ps -a --format '{{.Names}}'").split())
    assert "ray_head" not in head_names and "ray_worker" not in worker_names
    assert {"ray-head", "prometheus"} <= head_names and "ray-worker" in worker_names
    prometheus = lab.host("head").check_output("docker inspect --format '{{json .Config.Labels}}' prometheus")
    assert '"raydeploy.component":"prometheus"' in prometheus, "the earlier Prometheus was replaced by ours"
