"""Alertmanager's rendered config, its container, its secret files and the check that guards its replacement.

Pure rendering, no hosts: tests/lab/test_alerts.py runs the real Alertmanager, amtool included.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml

from deploys.alertmanager import alertmanager_spec, check_config_command, config_sources
from deploys.host_secrets import MissingAlertSecret, alert_receivers, alert_secret_files
from deploys.monitoring_config import alertmanager_config, alertmanager_url, prometheus_config
from deploys.settings import SettingsError, check_cluster, markdown_table, settings_from_data
from facts.alertmanager_answers import active_alertmanagers, sends_to_port
from tests.clusters import make_cluster

EMAIL = {
    "alert_smtp_smarthost": "mail.example.com:587",
    "alert_smtp_from": "ray@example.com",
    "alert_smtp_to": "ops@example.com",
}
HOOK = "https://hooks.example.com/services/T000/B000/secret-token"


def config(**data) -> dict:
    return yaml.safe_load(alertmanager_config(make_cluster(**data), webhook_url=HOOK))


def test_by_default_alerts_are_grouped_and_kept_in_alertmanager_with_sensible_intervals():
    rendered = config()
    assert rendered["route"] == {
        "receiver": "none",
        "group_by": ["alertname", "cluster"],
        "group_wait": "10s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }
    assert rendered["receivers"] == [{"name": "none"}]
    assert HOOK not in alertmanager_config(make_cluster(), webhook_url=HOOK)


def test_each_severity_goes_to_the_receivers_its_setting_names():
    rendered = config(
        alert_critical_receivers=["webhook", "slack", "email"], alert_warning_receivers=["email"], **EMAIL
    )
    routes = {route["receiver"]: route["matchers"] for route in rendered["route"]["routes"]}
    assert routes == {"critical": ['severity="critical"'], "warning": ['severity="warning"']}
    receivers = {receiver["name"]: receiver for receiver in rendered["receivers"]}
    critical = receivers["critical"]
    assert critical["webhook_configs"] == [{"url": HOOK, "send_resolved": True}]
    assert critical["slack_configs"][0]["api_url_file"] == "/etc/alertmanager/slack-api-url"
    assert "api_url" not in critical["slack_configs"][0]
    assert critical["email_configs"] == [{"to": "ops@example.com", "send_resolved": True}]
    assert set(receivers["warning"]) == {"name", "email_configs"}
    assert rendered["global"]["smtp_smarthost"] == "mail.example.com:587"
    assert "smtp_auth_password_file" not in rendered["global"]  # no user, no password


def test_the_smtp_password_and_the_slack_url_are_files_the_config_names_never_their_values():
    rendered = config(alert_critical_receivers=["slack", "email"], alert_smtp_username="ray", **EMAIL)
    assert rendered["global"]["smtp_auth_username"] == "ray"
    assert rendered["global"]["smtp_auth_password_file"] == "/etc/alertmanager/smtp-password"
    settings = make_cluster(
        alert_critical_receivers=["slack", "email"], alert_smtp_username="ray", **EMAIL
    ).head.settings
    secrets = {"alert-slack-url": "https://hooks.slack.com/services/X", "alert-smtp-password": "pa55-word"}
    files = alert_secret_files(settings, secrets.get)
    assert [(file.path, file.content, file.owner) for file in files] == [
        ("/etc/raydeploy/alertmanager/slack-api-url", "https://hooks.slack.com/services/X", 65534),
        ("/etc/raydeploy/alertmanager/smtp-password", "pa55-word", 65534),
    ]
    assert all(file.content not in file.name for file in files)


def test_a_receiver_without_its_secret_is_refused_naming_the_file_to_write():
    settings = settings_from_data("head", {"alert_warning_receivers": ["slack"], "state_dir": "/srv/state"})
    assert alert_receivers(settings) == ["slack"]
    with pytest.raises(MissingAlertSecret, match="/srv/state/secrets/alert-slack-url does not exist") as refused:
        alert_secret_files(settings, {}.get)
    assert str(refused.value).endswith("(one line, mode 0600) and deploy again; nothing was changed.")


def test_email_without_an_smtp_user_needs_no_password_file_and_asks_for_none():
    settings = make_cluster(alert_critical_receivers=["slack", "email"], **EMAIL).head.settings
    files = alert_secret_files(settings, {"alert-slack-url": "https://hooks.slack.com/services/X"}.get)
    assert [file.path for file in files] == ["/etc/raydeploy/alertmanager/slack-api-url"]


def test_receivers_and_email_settings_are_checked_before_anything_runs():
    with pytest.raises(SettingsError, match=r"alert_critical_receivers=\['pager'\] must be a list of: webhook"):
        settings_from_data("head", {"alert_critical_receivers": ["pager"]})
    cluster = make_cluster(workers=0, alert_critical_receivers=["email"])
    with pytest.raises(SettingsError) as error:
        check_cluster([("head", "head", cluster.head.settings)])
    assert [line.split(" is empty")[0] for line in str(error.value).splitlines()] == [
        "head: alert_smtp_smarthost",
        "head: alert_smtp_from",
        "head: alert_smtp_to",
    ]


def test_prometheus_sends_alerts_to_alertmanager_on_its_host_and_not_when_it_is_off():
    rendered = yaml.safe_load(prometheus_config(make_cluster()))
    assert rendered["alerting"] == {"alertmanagers": [{"static_configs": [{"targets": ["127.0.0.1:9093"]}]}]}
    assert "alerting" not in yaml.safe_load(prometheus_config(make_cluster(alertmanager_enabled=False)))


def test_alertmanager_runs_alone_with_its_config_directory_read_only_and_its_data_in_a_volume():
    cluster = make_cluster()
    spec = alertmanager_spec(cluster.head.settings, alertmanager_url(cluster))
    command = spec.run_command()
    assert "--cluster.listen-address=" in command and "--web.external-url=http://10.0.0.1:9093" in command
    assert spec.volumes == (
        "/etc/raydeploy/alertmanager:/etc/alertmanager:ro",
        "raydeploy-alertmanager-data:/alertmanager",
    )
    routed = make_cluster(alert_critical_receivers=["webhook"], alert_group_wait="1s")
    assert alertmanager_spec(routed.head.settings, alertmanager_url(routed)).digest() == spec.digest()


def test_the_check_command_names_the_settings_its_complaint_quotes_and_hides_urls(tmp_path):
    settings = make_cluster(alert_critical_receivers=["email"], **EMAIL).head.settings
    assert config_sources(settings)["alert_smtp_smarthost"] == ["mail.example.com:587"]
    command = check_config_command(settings, "head")
    assert HOOK not in command and "/etc/raydeploy/alertmanager-candidate:/etc/alertmanager:ro" in command
    # The command's own shell, with a stand-in docker that fails as amtool does.
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\necho 'FAILED: address mail.example.com:587: bad; see {HOOK}'\nexit 1\n")
    fake.chmod(0o755)
    ran = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"}
    )
    assert ran.returncode == 1
    assert "does not check" in ran.stderr and "alert_smtp_smarthost" in ran.stderr
    assert "alert_smtp_from" not in ran.stderr
    assert HOOK not in ran.stderr and "<a URL, hidden>" in ran.stderr


def test_prometheus_answer_about_its_alertmanagers_is_read_by_one_parser():
    answer = '{"status":"success","data":{"activeAlertmanagers":[{"url":"http://127.0.0.1:9093/api/v2/alerts"}]}}'
    assert active_alertmanagers(answer) == ["http://127.0.0.1:9093/api/v2/alerts"]
    assert sends_to_port(active_alertmanagers(answer), 9093) and not sends_to_port([], 9093)
    with pytest.raises(ValueError):
        active_alertmanagers('{"data": {}}')


def test_the_readme_table_lists_the_alert_settings():
    table = markdown_table()
    for key in ("alertmanager_image", "alert_critical_receivers", "alert_group_wait", "alert_smtp_smarthost"):
        assert f"| `{key}` |" in table
