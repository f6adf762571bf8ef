"""`raydeploy validate` and `pytest validate/` on the deployed lab: healthy, a worker down, Prometheus down, a host unreachable."""

from __future__ import annotations

import json

from tests.conftest import BIN, run_command
from tests.lab.conftest import DeployedCluster


def validate(deployed: DeployedCluster, *args: str) -> tuple[int, dict]:
    result = deployed.lab.raydeploy("validate", "--format", "json", *args, check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def by_status(report: dict, status: str) -> list[dict]:
    return [result for result in report["results"] if result["status"] == status]


def test_a_healthy_lab_passes_every_check_and_the_smoke_job_runs_on_every_node(deployed: DeployedCluster):
    deployed.wait_until_settled()
    code, report = validate(deployed)
    assert code == 0, by_status(report, "fail") + by_status(report, "unreachable")
    assert report["schema"] == "raydeploy.validation/1" and report["ok"] is True
    checks = {(r["checkpoint"], r["check"], r["host"]) for r in report["results"]}
    for host in ("head", "worker-1", "worker-2"):
        assert ("docker-installation", "service docker", host) in checks
        assert ("monitoring-deployment", "container node-exporter", host) in checks
    assert ("ray-deployment", "container ray-head", "head") in checks
    assert ("ray-deployment", "ray nodes alive", "cluster") in checks
    smoke = next(r for r in report["results"] if r["check"] == "ray smoke job")
    assert smoke["status"] == "pass" and all(name in smoke["detail"] for name in ("head", "worker-1", "worker-2"))
    # Grafana and cAdvisor are off in the lab: reported as such, not as failures.
    off = {(r["check"], r["host"]) for r in by_status(report, "not-deployed")}
    assert ("grafana", "cluster") in off and ("container cadvisor", "worker-1") in off
    assert report["summary"]["fail"] == 0 and report["summary"]["pass"] >= 25
    # The smoke job cleaned up after itself.
    jobs = deployed.jobs()
    assert not [job for job in jobs if str(job.get("submission_id", "")).startswith("raydeploy-smoke-")], jobs


def test_the_text_report_is_a_table_with_a_verdict(deployed: DeployedCluster):
    deployed.wait_until_settled()
    result = deployed.lab.raydeploy("validate", "--health-only", check=False)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CHECKPOINT", "CHECK", "HOST", "STATUS", "DETAIL"]
    assert lines[-1].startswith("OK: ") and "0 failed" in lines[-1]


def test_the_checks_run_as_plain_pytest_from_the_inventory(deployed: DeployedCluster):
    deployed.wait_until_settled()
    result = run_command(
        [str(BIN / "pytest"), "validate/", "--inventory", "inventories/lab.py", "-p", "no:cacheprovider", "-q", "-rs"],
        env=deployed.lab.env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout and "failed" not in result.stdout
    assert "grafana not deployed" in result.stdout  # skipped with the inventory's reason, not hidden


def test_a_stopped_worker_fails_validation_naming_the_worker_and_the_check(deployed: DeployedCluster):
    worker = deployed.lab.host("worker-2")
    worker.check_output("docker stop ray-worker")
    try:
        code, report = validate(deployed, "--checkpoint", "ray-deployment")
    finally:
        worker.check_output("docker start ray-worker")
    assert code == 1
    failures = {(r["check"], r["host"]): r["detail"] for r in by_status(report, "fail")}
    assert ("container ray-worker", "worker-2") in failures
    assert "not running" in failures[("container ray-worker", "worker-2")]
    assert "worker-2 (10.213." in failures[("ray nodes alive", "cluster")]
    assert ("container ray-worker", "worker-1") not in failures
    deployed.wait_until_settled()


def test_a_stopped_prometheus_is_named_by_the_health_check_and_ray_still_passes(deployed: DeployedCluster):
    head = deployed.lab.host("head")
    head.check_output("docker stop prometheus")
    try:
        code, report = validate(deployed, "--health-only")
    finally:
        head.check_output("docker start prometheus")
    deployed.wait_until_settled()
    assert code == 1
    failures = {r["check"]: r["detail"] for r in by_status(report, "fail")}
    # Alertmanager's check asks Prometheus whether it sends alerts there: without Prometheus, it cannot say.
    assert set(failures) == {"prometheus", "prometheus sends alerts"}, failures
    assert "127.0.0.1" in failures["prometheus"]
    passed = {r["check"] for r in by_status(report, "pass")}
    assert {"ray dashboard", "ray nodes alive", "ray resources"} <= passed


def test_an_unreachable_host_is_reported_and_the_others_are_still_checked(deployed: DeployedCluster, engine):
    container = f"{deployed.lab.name}-worker-1"
    engine.run(["exec", container, "systemctl", "stop", "ssh.service"])
    try:
        code, report = validate(deployed, "--checkpoint", "docker-installation")
    finally:
        engine.run(["exec", container, "systemctl", "start", "ssh.service"])
    assert code == 1
    unreachable = by_status(report, "unreachable")
    assert [(r["host"], r["check"]) for r in unreachable] == [("worker-1", "ssh")], unreachable
    checked = {r["host"] for r in by_status(report, "pass")}
    assert checked == {"head", "worker-2"}
