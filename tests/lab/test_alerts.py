"""Alertmanager on a lab of its own (1 head + 1 worker): real Alertmanager, Prometheus, Ray and a real receiver.

The receiver is an HTTP server on this machine's address in the lab's network (never a wider
one); the generic webhook's URL, a secret, points at it with a token in its path. The tests run
in file order: deployed, checked, idempotent, silenced, fired and resolved, then a config that
does not check.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml

from deploys.monitoring_config import alertmanager_config
from deploys.settings import Settings
from facts.alertmanager_answers import ALERTMANAGERS_PATH, active_alertmanagers, sends_to_port
from raydeploy.lab.alert_receiver import AlertReceiver, gateway_address, is_notice
from tests.clusters import make_cluster
from tests.lab.conftest import DeployedCluster, TestLab, changed_operations, deploy, grand_total

# Short enough for a test: RayNodeLost fires 10 s after a node is lost; group changes go out every 5 s.
ALERT_DATA = {
    "alert_critical_receivers": '["webhook"]',
    "alert_ray_node_lost_for": "10s",
    "alert_group_wait": "1s",
    "alert_group_interval": "5s",
}
WEBHOOK_TOKEN = "rdtest-hook-7c1e9f0a4b2d"
CONFIG = "/etc/raydeploy/alertmanager/alertmanager.yml"
AMTOOL_IMAGE = "raydeploy-lab/alertmanager:v0.25.0"
SMTP = {"alert_smtp_from": "ray@example.com", "alert_smtp_to": "ops@example.com"}


def data_args(**extra: str) -> list[str]:
    args: list[str] = []
    for key, value in {**ALERT_DATA, **extra}.items():
        args += ["--data", f"{key}={value}"]
    return args


class AlertLab(DeployedCluster):
    """The deployed lab with its receiver, the webhook URL it was given, and the first deploy's output."""

    def __init__(self, lab: TestLab, receiver: AlertReceiver, webhook_url: str, output: str):
        super().__init__(lab)
        self.receiver, self.webhook_url, self.output = receiver, webhook_url, output
        self.alertmanager = f"http://127.0.0.1:{lab.state().head.published['alertmanager']}"

    def workers(self) -> int:
        return len(self.lab.state().workers)

    def settle(self, timeout_s: float = 120) -> None:
        """Every Ray node alive and every Prometheus target up (what monitoring-deployment's own wait wants);
        DeployedCluster.wait_until_settled knows the 1+2 lab only."""
        self.wait_for_alive(1 + self.workers(), timeout_s)
        nodes = {"head", *(worker.name for worker in self.lab.state().workers)}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            targets = self.targets()
            ray = {t["labels"].get("node") for t in targets if t["labels"].get("job") == "ray"}
            if ray >= nodes and all(t["health"] == "up" for t in targets):
                return
            time.sleep(2)
        raise AssertionError(f"Prometheus targets not all up after {timeout_s} s: {self.targets()}")


@pytest.fixture(scope="module")
def alerting(make_lab) -> AlertLab:
    lab = make_lab("alerts")
    lab.up("--workers", "1")
    receiver = AlertReceiver(gateway_address(lab.name))
    webhook_url = receiver.url(f"/alerts/{WEBHOOK_TOKEN}")
    secrets = lab.home / lab.name / "secrets"
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    (secrets / "alert-webhook-url").write_text(webhook_url + "\n")
    (secrets / "alert-webhook-url").chmod(0o600)
    result = deploy(lab, "deploys/ray.py", *data_args())
    assert grand_total(result.output)[1] == 0, result.output
    yield AlertLab(lab, receiver, webhook_url, result.output)
    receiver.close()
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def test_amtool_checks_the_config_rendered_for_every_receiver_and_refuses_a_bad_one(engine, alerting, tmp_path):
    # `alerting` brought the lab up, which built the Alertmanager image with its amtool.
    every = make_cluster(
        alert_critical_receivers=["webhook", "slack", "email"],
        alert_warning_receivers=["slack"],
        alert_smtp_smarthost="mail.example.com:587",
        alert_smtp_from="ray@example.com",
        alert_smtp_to="ops@example.com, oncall@example.com",
        alert_smtp_username="ray",
        alert_slack_channel="#ray-alerts",
    )
    (tmp_path / "good.yml").write_text(alertmanager_config(every, webhook_url="https://hooks.example.com/x"))
    bad = make_cluster(alert_critical_receivers=["email"], alert_smtp_smarthost="mail.example.com", **SMTP)
    (tmp_path / "bad.yml").write_text(alertmanager_config(bad))
    amtool = ["run", "--rm", "--user=0", "--entrypoint=amtool", f"--volume={tmp_path}:/c:ro", AMTOOL_IMAGE]
    good = engine.run([*amtool, "check-config", "/c/good.yml"], check=False)
    assert good.returncode == 0 and "SUCCESS" in good.stdout, good.stdout + good.stderr
    assert "3 receivers" in good.stdout
    refused = engine.run([*amtool, "check-config", "/c/bad.yml"], check=False)
    assert refused.returncode != 0 and "missing port in address" in refused.stdout + refused.stderr


def alertmanager_container(alerting: AlertLab) -> tuple[str, str]:
    found = alerting.container("head", "alertmanager")
    return found["Id"], found["State"]["StartedAt"]


def test_the_deployed_config_checks_and_prometheus_sends_its_alerts_to_alertmanager(alerting: AlertLab):
    head = alerting.lab.host("head")
    checked = head.run(f"docker exec alertmanager amtool check-config {CONFIG.replace('/etc/raydeploy', '/etc')}")
    assert checked.rc == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    assert requests.get(f"{alerting.alertmanager}/-/ready", timeout=10).status_code == 200
    answer = requests.get(f"{alerting.prometheus}{ALERTMANAGERS_PATH}", timeout=10).text
    assert sends_to_port(active_alertmanagers(answer), Settings().alertmanager_port), answer
    loaded = yaml.safe_load(
        requests.get(f"{alerting.alertmanager}/api/v2/status", timeout=10).json()["config"]["original"]
    )
    assert [(route["receiver"], route["matchers"]) for route in loaded["route"]["routes"]] == [
        ("critical", ['severity="critical"'])
    ]


def test_validate_checks_alertmanager_is_ready_and_prometheus_sends_to_it(alerting: AlertLab):
    result = alerting.lab.raydeploy(
        "validate", "--checkpoint", "monitoring-deployment", "--format", "json", check=False
    )
    results = {(r["check"], r["host"]): r for r in json.loads(result.stdout)["results"]}
    for check in (
        ("alertmanager", "cluster"),
        ("prometheus sends alerts", "cluster"),
        ("container alertmanager", "head"),
    ):
        assert results[check]["status"] == "pass", results[check]
    assert "127.0.0.1:9093" in results[("prometheus sends alerts", "cluster")]["detail"]


def test_the_webhook_url_is_in_no_output_no_command_line_and_a_0600_file_of_alertmanagers_user(alerting: AlertLab):
    assert WEBHOOK_TOKEN not in alerting.output
    dry = deploy(alerting.lab, "deploys/monitoring-deployment.py", "--dry", *data_args(alert_group_interval="6s"))
    assert "alertmanager.yml" in dry.output and WEBHOOK_TOKEN not in dry.output
    head = alerting.lab.host("head")
    assert WEBHOOK_TOKEN not in head.check_output("docker inspect alertmanager prometheus")
    assert WEBHOOK_TOKEN not in head.check_output("ps -eo args")
    config = head.file(CONFIG)
    assert (config.mode, config.uid, config.gid) == (0o600, 65534, 0)
    assert WEBHOOK_TOKEN in head.check_output(f"cat {CONFIG}")


def test_a_second_run_changes_nothing(alerting: AlertLab):
    alerting.settle()
    again = deploy(alerting.lab, "deploys/monitoring-deployment.py", *data_args())
    assert grand_total(again.output) == (0, 0), changed_operations(again.output)


def test_a_silence_made_through_alertmanagers_api_keeps_a_matching_alert_from_the_receiver(alerting: AlertLab):
    now = time.time()
    silence = {
        "matchers": [{"name": "alertname", "value": "RaydeployTestSilenced", "isRegex": False, "isEqual": True}],
        "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5)),
        "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 600)),
        "createdBy": "tests/lab/test_alerts.py",
        "comment": "a silence made for the test",
    }
    made = requests.post(f"{alerting.alertmanager}/api/v2/silences", json=silence, timeout=10)
    assert made.status_code == 200, made.text
    silence_id = made.json()["silenceID"]
    alerts = [
        {"labels": {"alertname": name, "severity": "critical", "cluster": alerting.lab.name}}
        for name in ("RaydeployTestSilenced", "RaydeployTestLoud")
    ]
    sent_at = time.time()
    assert requests.post(f"{alerting.alertmanager}/api/v2/alerts", json=alerts, timeout=10).status_code == 200
    # The loud one arrives (so the silenced one would have by now); the silenced one is suppressed.
    alerting.receiver.wait_for(is_notice("RaydeployTestLoud", "firing"), 30, after=sent_at)
    held = requests.get(f"{alerting.alertmanager}/api/v2/alerts", params={"silenced": "true"}, timeout=10).json()
    state = {alert["labels"]["alertname"]: alert["status"] for alert in held}
    assert state["RaydeployTestSilenced"]["state"] == "suppressed"
    assert state["RaydeployTestSilenced"]["silencedBy"] == [silence_id]
    time.sleep(6)  # one more group interval: still nothing for it
    got = [n for n in alerting.receiver.notices if "RaydeployTestSilenced" in n.alert_names()]
    assert got == [], got
    assert requests.delete(f"{alerting.alertmanager}/api/v2/silence/{silence_id}", timeout=10).status_code == 200


def test_a_lost_ray_node_reaches_the_receiver_and_so_does_its_return(alerting: AlertLab):
    worker = alerting.lab.host("worker-1")
    nodes = 1 + alerting.workers()
    wait = time.monotonic() + 120
    while len(alerting.query("ray_node_cpu_count")) != nodes and time.monotonic() < wait:
        time.sleep(2)
    stopped_at = time.time()
    worker.check_output("docker stop ray-worker")
    try:
        fired = alerting.receiver.wait_for(is_notice("RayNodeLost", "firing"), 120, after=stopped_at)
    finally:
        worker.check_output("docker start ray-worker")
    started_at = time.time()
    alert = next(a for a in fired.body["alerts"] if a["labels"]["alertname"] == "RayNodeLost")
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["cluster"] == alerting.lab.name
    assert fired.body["receiver"] == "critical"
    print(f"RayNodeLost delivered {fired.received_at - stopped_at:.1f} s after the worker stopped")
    resolved = alerting.receiver.wait_for(is_notice("RayNodeLost", "resolved"), 180, after=started_at)
    print(f"resolved notice {resolved.received_at - started_at:.1f} s after the worker started")
    alerting.settle()


def test_a_config_that_does_not_check_stops_the_deploy_and_leaves_the_running_one(alerting: AlertLab):
    head = alerting.lab.host("head")
    before = head.check_output(f"sha256sum {CONFIG}"), alertmanager_container(alerting)
    bad = data_args(
        alert_critical_receivers='["webhook","email"]',
        alert_smtp_smarthost="mail.example.com",  # no port: amtool refuses it
        alert_smtp_from="ray@example.com",
        alert_smtp_to="ops@example.com",
    )
    result = deploy(alerting.lab, "deploys/monitoring-deployment.py", *bad, check=False)
    assert result.returncode != 0, result.output
    assert "does not check" in result.output and "alert_smtp_smarthost" in result.output, result.output
    assert "missing port in address" in result.output
    assert WEBHOOK_TOKEN not in result.output
    assert not any("Alertmanager" in name and "Reload" in name for name in changed_operations(result.output))
    assert (head.check_output(f"sha256sum {CONFIG}"), alertmanager_container(alerting)) == before
    status = requests.get(f"{alerting.alertmanager}/api/v2/status", timeout=10).json()
    assert "mail.example.com" not in json.dumps(status)
    # With the settings fixed, the next run checks the new config and uses it.
    fixed = deploy(alerting.lab, "deploys/monitoring-deployment.py", *data_args())
    assert grand_total(fixed.output)[1] == 0, fixed.output
