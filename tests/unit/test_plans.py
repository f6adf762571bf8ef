"""Plans as data: what a digest covers, what it leaves out, and how two plans differ (no hosts needed)."""

from __future__ import annotations

import copy
import hashlib
from io import BytesIO, StringIO

import click
import pytest
from pyinfra.api.command import FileUploadCommand, StringCommand

from raydeploy.plans import PLAN_FORMAT, Execution, Plan, difference, digest_of
from raydeploy.pyinfra_session import REDACTED, command_record
from raydeploy.runner import RunStopped

UPLOAD = {"type": "upload", "dest": "/etc/docker/daemon.json", "sha256": "a" * 64}
SHELL = {"type": "shell", "command": "systemctl restart docker.service", "sha256": "b" * 64}


def document() -> dict:
    return {
        "format": PLAN_FORMAT,
        "checkpoint": "docker-installation",
        "hosts": {
            "head": {
                "status": "planned",
                "operations": [{"name": "Render /etc/docker/daemon.json", "commands": [UPLOAD, SHELL]}],
                "notes": ["daemon.json changes"],
            },
            "worker-1": {"status": "unreachable", "operations": [], "notes": []},
        },
    }


def changed(edit) -> dict:
    edited = copy.deepcopy(document())
    edit(edited)
    return edited


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda d: d["hosts"]["head"]["operations"][0]["commands"][0].update(sha256="c" * 64), id="file content"
        ),
        pytest.param(
            lambda d: d["hosts"]["head"]["operations"][0]["commands"][1].update(command="reboot"), id="command"
        ),
        pytest.param(
            lambda d: d["hosts"]["head"]["operations"][0]["commands"][1].update(sha256="d" * 64), id="command as run"
        ),
        pytest.param(lambda d: d["hosts"]["head"]["operations"][0]["commands"].append(SHELL), id="one more command"),
        pytest.param(lambda d: d["hosts"]["head"]["operations"][0].update(name="Other"), id="operation name"),
        pytest.param(lambda d: d["hosts"]["worker-1"].update(status="planned"), id="unreachable host"),
        pytest.param(lambda d: d["hosts"].pop("worker-1"), id="host"),
        pytest.param(lambda d: d.update(checkpoint="cleanup-existing"), id="checkpoint"),
        pytest.param(lambda d: d.update(format=PLAN_FORMAT + 1), id="format"),
        pytest.param(lambda d: d.update(error="stopped"), id="error"),
        pytest.param(lambda d: d.update(data={"purge_data": "true"}), id="an action's arguments"),
        pytest.param(lambda d: d["hosts"]["head"].update(status="failed", error="x"), id="failed host"),
    ],
)
def test_the_digest_covers_every_command_file_hash_and_host_state(edit):
    assert digest_of(changed(edit)) != digest_of(document())


def test_an_actions_arguments_reach_the_session_as_host_data_and_are_shown_with_the_plan():
    from raydeploy.checkpoints import get
    from raydeploy.plans import session_command
    from raydeploy.pyinfra_session import arguments

    command = session_command("inventory.py", get("destroy"), run=False, data={"purge_data": "true", "x": "a=b"})
    assert command[-4:] == ["--data", "purge_data=true", "--data", "x=a=b"]
    assert arguments(command[3:]).data == {"purge_data": "true", "x": "a=b"}
    plan = Plan("destroy", "fp", {**document(), "checkpoint": "destroy", "data": {"purge_data": "true"}})
    assert "  with purge_data=true" in plan.describe().splitlines()


def test_the_digest_leaves_out_the_notes_people_read():
    reworded = changed(lambda d: d["hosts"]["head"].update(notes=["daemon.json will change, reworded"]))
    assert digest_of(reworded) == digest_of(document())


def test_which_container_cleanup_removes_is_in_the_digest_though_its_operation_name_never_changes():
    # cleanup-existing's operation is always "Remove a leftover container"; the container is in its
    # command (and in the notes, which the digest leaves out), so approving the removal of one
    # container never approves the removal of another.
    def cleanup(container: str) -> dict:
        command = f"docker rm --force {container}"
        operation = {
            "name": "Remove a leftover container",
            "commands": [{"type": "shell", "command": command, "sha256": hashlib.sha256(command.encode()).hexdigest()}],
        }
        host = {"status": "planned", "operations": [operation], "notes": ["a leftover container"]}
        return {"format": PLAN_FORMAT, "checkpoint": "cleanup-existing", "hosts": {"worker-1": host}}

    assert digest_of(cleanup("ray_head")) != digest_of(cleanup("grafana"))
    assert difference(cleanup("ray_head"), cleanup("grafana")) == [
        "worker-1: Remove a leftover container: commands changed"
    ]


def test_difference_names_per_host_the_operation_whose_commands_changed():
    after = changed(lambda d: d["hosts"]["head"]["operations"][0]["commands"][0].update(sha256="c" * 64))
    assert difference(document(), after) == ["head: Render /etc/docker/daemon.json: commands changed"]
    added = changed(lambda d: d["hosts"]["head"]["operations"].append({"name": "Install x", "commands": [SHELL]}))
    assert difference(document(), added) == ["head: +Install x ($ systemctl restart docker.service)"]
    twice = changed(
        lambda d: d["hosts"]["head"]["operations"].append(copy.deepcopy(d["hosts"]["head"]["operations"][0]))
    )
    assert difference(document(), twice) == [
        "head: +Render /etc/docker/daemon.json (upload /etc/docker/daemon.json (sha256 aaaaaaaaaaaa))"
    ], "an operation whose name repeats is one more operation"
    back = changed(lambda d: d["hosts"]["worker-1"].update(status="planned"))
    assert difference(document(), back) == ["worker-1: unreachable -> planned"]


def test_a_plan_reads_its_changes_notes_and_unreachable_hosts_from_its_document():
    plan = Plan("docker-installation", "fp", document())
    assert plan.changes == {"head": ["Render /etc/docker/daemon.json"]}
    assert plan.notes == {"head": ["daemon.json changes"]}
    assert plan.unreachable == ["worker-1"] and plan.has_changes
    text = plan.describe(commands=True)
    assert "$ systemctl restart docker.service" in text and "upload /etc/docker/daemon.json" in text
    assert "worker-1: UNREACHABLE" in text


def test_a_shell_command_is_shown_without_secrets_and_hashed_as_it_runs():
    secret = "s3cret-token-value"
    record = command_record(StringCommand("redis-cli", "-a", secret, "ping"), [secret])
    assert secret not in record["command"] and REDACTED in record["command"]
    other = command_record(StringCommand("redis-cli", "-a", "another-token-value", "ping"), ["another-token-value"])
    assert record["command"] == other["command"] and record["sha256"] != other["sha256"]


def test_an_uploaded_file_is_planned_as_a_hash_of_its_content_never_the_content():
    first = command_record(FileUploadCommand(BytesIO(b"password=1"), "/etc/x"), [])
    second = command_record(FileUploadCommand(StringIO("password=2"), "/etc/x"), [])
    assert first["dest"] == "/etc/x" and "password" not in str(first)
    assert first["sha256"] != second["sha256"]


def test_a_failed_execution_tells_each_hosts_reason_once():
    execution = Execution(False, 0, [], ["head", "worker-1"], {"head": "port 6379 in use", "worker-1": "no Docker"})
    assert execution.summary == "head: port 6379 in use\nworker-1: no Docker"


def test_a_stopped_run_leaves_the_cli_as_a_click_exception_with_its_exit_code():
    stopped = RunStopped("needs an approval", 3)
    assert isinstance(stopped, click.ClickException) and stopped.exit_code == 3
