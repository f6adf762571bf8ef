"""The validate package without hosts: reading inventories, the report's two forms, the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO
from validate.inventory import InventoryError, load, read_inventory_file, write_ssh_config
from validate.results import CLUSTER, FAIL, NOT_DEPLOYED, PASS, UNREACHABLE, Report, Result


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "inventory.py"
    path.write_text(text)
    return str(path)


def test_the_inventory_is_read_as_pyinfra_reads_it(tmp_path):
    path = write(
        tmp_path,
        "import os\n"
        "_private = ['ignored']\n"
        "head = [('h', {'ssh_hostname': '10.1.0.1', 'ray_num_cpus': 4})]\n"
        "workers = (['w1', ('w2', {'ssh_port': 2222, 'min_cpus': 2})], {'min_cpus': 1, 'ssh_user': 'deploy'})\n",
    )
    members, groups = read_inventory_file(path)
    assert groups == {"head": ["h"], "workers": ["w1", "w2"]}
    data = dict(members)
    assert data["w2"] == {"min_cpus": 2, "ssh_user": "deploy", "ssh_port": 2222}  # the host's own data wins
    assert data["w1"] == {"min_cpus": 1, "ssh_user": "deploy"}
    loaded = load(path)
    assert [node.name for node in loaded.cluster.nodes] == ["h", "w1", "w2"]
    assert loaded.cluster.head.settings.cluster_address == "10.1.0.1"
    assert (loaded.ssh["w2"].port, loaded.ssh["w2"].user, loaded.ssh["w1"].hostname) == (2222, "deploy", "w1")


def test_the_example_production_inventory_loads_without_contacting_a_host():
    loaded = load(str(REPO / "inventories" / "prod.py"))
    assert loaded.cluster.head.name == "MASTER" and len(loaded.cluster.workers) == 4
    assert loaded.cluster.expected_cpus == 96


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = ['w1']\n", "group 'head' must hold exactly one host"),
        ("head = [('h', {'ray_gcs_port': 'x'})]\n", "h: ray_gcs_port='x' must be a whole number"),
        ("x = 1\n", "defines no hosts"),
        ("import sys\nsys.exit('no lab: run raydeploy lab up')\n", "no lab: run raydeploy lab up"),
        ("head = [\n", "SyntaxError"),
    ],
)
def test_a_bad_inventory_is_refused_saying_why(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        load(write(tmp_path, text))


def test_the_ssh_config_carries_the_inventorys_ssh_settings(tmp_path):
    path = write(
        tmp_path,
        "head = [('h', {'ssh_hostname': '127.0.0.1', 'ssh_port': 2200, 'ssh_user': 'root', 'ssh_key': '/k',"
        " 'ssh_known_hosts_file': '/kh', 'ssh_strict_host_key_checking': 'yes', 'cluster_address': '10.0.0.1'})]\n",
    )
    config = write_ssh_config(load(path).ssh, tmp_path / "ssh").read_text()
    for line in ("Host h", "HostName 127.0.0.1", "Port 2200", "User root", "IdentityFile /k", "UserKnownHostsFile /kh"):
        assert f"{line}\n" in config
    assert "StrictHostKeyChecking yes" in config and "ControlMaster auto" in config
    assert (tmp_path / "ssh" / "ssh_config").stat().st_mode & 0o777 == 0o600


def test_the_report_is_ok_only_without_failures_or_unreachable_hosts():
    report = Report(inventory="inv.py", scope="all")
    report.results = [
        Result("ray-deployment", "container ray-head", "head", PASS, "running"),
        Result("monitoring-deployment", "grafana", CLUSTER, NOT_DEPLOYED, "off"),
    ]
    assert report.ok
    report.results.append(Result("docker-installation", "ssh", "w1", UNREACHABLE, "timed out"))
    assert not report.ok
    document = json.loads(report.as_json())
    assert document["schema"] == "raydeploy.validation/1" and document["ok"] is False
    assert document["summary"] == {PASS: 1, FAIL: 0, NOT_DEPLOYED: 1, UNREACHABLE: 1}
    # Ordered by checkpoint, cluster-wide checks first.
    assert [r["checkpoint"] for r in document["results"]] == [
        "docker-installation",
        "ray-deployment",
        "monitoring-deployment",
    ]
    text = report.as_text().splitlines()
    assert text[0].split() == ["CHECKPOINT", "CHECK", "HOST", "STATUS", "DETAIL"]
    assert text[-1].startswith("FAILED: 1 passed, 0 failed, 1 not deployed, 1 unreachable")


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--approval-check", "ray-deployment"], 0, "may run without approval"),
        (["--approval-check", "cleanup-existing"], 1, "destructive: yes"),
        (["-i", "inventories/missing.py"], 2, "inventory inventories/missing.py: no such file"),
        (["--checkpoint", "nonsense"], 2, "'nonsense' is not one of"),
        (["--health-only", "--checkpoint", "ray-deployment"], 2, "exclude each other"),
    ],
)
def test_validate_exit_codes_for_approval_checks_and_bad_input(raydeploy_cli, args, code, says):
    result = raydeploy_cli("validate", *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stdout + result.stderr


def test_approval_check_answers_in_json(raydeploy_cli):
    result = raydeploy_cli("validate", "--approval-check", "docker-installation", "--format", "json")
    answer = json.loads(result.stdout)
    assert answer["approval_required"] is True and answer["destructive"] is False and answer["may_run"] is False


def test_approval_check_reads_the_wrappers_approvals(raydeploy_cli, tmp_path):
    from raydeploy.approvals import Approvals
    from raydeploy.state import StateStore
    from tests.conftest import plan_of

    plan = plan_of("docker-installation", "fp", {"head": ["Install docker.io"]})
    Approvals(StateStore(tmp_path)).grant(plan, "alice", "CHG-7")
    result = raydeploy_cli("validate", "--approval-check", "docker-installation", "--state-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid approval: " in result.stdout and "by alice" in result.stdout and plan.digest in result.stdout
