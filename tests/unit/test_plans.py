"""Plans as data: what a digest covers, what it leaves out, and how two plans differ (no hosts needed)."""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import subprocess
import sys
import time
from io import BytesIO, StringIO
from pathlib import Path

import click
import pytest
from pyinfra.api.command import FileUploadCommand, StringCommand

from raydeploy.checkpoints import Checkpoint
from raydeploy.plans import (
    PLAN_FORMAT,
    REPO,
    Execution,
    Plan,
    PlanError,
    _answer,
    _host_error,
    _last_line,
    _results,
    _stopped_while_preparing,
    _tail,
    difference,
    digest_of,
    execute,
    fingerprint,
    hint,
    make_plan,
    shown,
)
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
    plan = Plan("destroy", "fp", {**document(), "checkpoint": "destroy", "data": {"purge_data": "true", "x": "a=b"}})
    assert "  with purge_data=true, x=a=b" in plan.describe().splitlines()


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


def test_a_plans_digest_is_the_same_in_every_raydeploy_version():
    """Approvals in the state database hold digests: the same plan must keep its digest, or they all lapse."""
    assert digest_of(document()) == "ccb07d302c2714a3"
    assert digest_of({}) == "9f893282f0074bf3"


def test_a_plan_made_from_a_partial_document_fills_in_format_checkpoint_and_hosts():
    assert Plan("docker-installation", "fp").document == {
        "format": PLAN_FORMAT,
        "checkpoint": "docker-installation",
        "hosts": {},
    }
    assert Plan("docker-installation", "fp", {"hosts": {"h": {"status": "planned"}}}).hosts == {
        "h": {"status": "planned"}
    }
    assert digest_of({"format": 1, "hosts": {"h": {"status": "planned"}}}) != digest_of({"format": 1})


def test_a_plan_tells_people_per_host_what_changes_and_what_failed():
    plan = Plan("docker-installation", "fp", document())
    assert plan.describe() == "\n".join(
        [
            "plan for docker-installation (digest ccb07d302c2714a3, inventory fp):",
            "  worker-1: UNREACHABLE, not planned",
            "  head: 1 change(s)",
            "    ~ Render /etc/docker/daemon.json",
            "    ! daemon.json changes",
        ]
    )
    failed = changed(
        lambda d: d["hosts"].update(
            w2={"status": "failed", "error": "no sudo"}, w3={"status": "planned", "notes": ["only a note"]}
        )
    )
    failed["hosts"]["head"].pop("notes")
    assert Plan("docker-installation", "fp", failed).describe().splitlines()[1:] == [
        "  worker-1: UNREACHABLE, not planned",
        "  w2: FAILED: no sudo",
        "  head: 1 change(s)",
        "    ~ Render /etc/docker/daemon.json",
        "  w3: 0 change(s)",
        "    ! only a note",
    ]
    quiet = Plan("docker-installation", "fp", {"hosts": {"head": {"status": "planned", "operations": [], "notes": []}}})
    assert quiet.describe().splitlines()[1:] == ["  no changes"]
    only_failed = Plan("docker-installation", "fp", {"hosts": {"head": {"status": "failed", "error": "x"}}})
    assert only_failed.describe().splitlines()[1:] == ["  head: FAILED: x"]


def test_a_plans_summary_and_dict_are_what_the_api_and_console_show():
    plan = Plan("docker-installation", "fp", document())
    noted = changed(lambda d: d["hosts"].update(w3={"status": "planned", "notes": ["only a note"]}))
    noted["hosts"]["w4"] = {"status": "planned", "operations": [{"name": "Only a change", "commands": []}]}
    assert Plan("docker-installation", "fp", noted).summary() == {
        "head": {"changes": 1, "operations": ["Render /etc/docker/daemon.json"], "notes": ["daemon.json changes"]},
        "w3": {"changes": 0, "operations": [], "notes": ["only a note"]},
        "w4": {"changes": 1, "operations": ["Only a change"], "notes": []},
    }
    assert plan.as_dict() == {
        "checkpoint": "docker-installation",
        "digest": plan.digest,
        "fingerprint": "fp",
        "has_changes": True,
        "disruptive": False,
        "disruptions": {},
        "unreachable": ["worker-1"],
        "hosts": plan.summary(),
        "plan": plan.document,
    }


def test_each_kind_of_planned_command_is_shown_in_a_line():
    assert shown(SHELL) == "$ systemctl restart docker.service"
    assert shown(UPLOAD) == "upload /etc/docker/daemon.json (sha256 aaaaaaaaaaaa)"
    assert shown({"type": "download", "src": "/etc/x", "dest": "/tmp/x"}) == "download /etc/x -> /tmp/x"
    assert (
        shown({"type": "function", "function": "wait_for_ray", "sha256": "c" * 64})
        == "function wait_for_ray (sha256 cccccccccccc)"
    )
    assert shown({"type": "rsync", "sha256": "d" * 64}) == "rsync (sha256 dddddddddddd)"


def test_difference_names_hosts_added_removed_or_failing_anew():
    assert difference({}, document()) == ["head: absent -> planned", "worker-1: absent -> unreachable"]
    assert difference(document(), {"format": 1}) == ["head: planned -> absent", "worker-1: unreachable -> absent"]
    failing = changed(lambda d: d["hosts"]["head"].update(error="disk full"))
    assert difference(document(), failing) == ["head: error now: disk full"]
    assert difference(failing, copy.deepcopy(failing)) == [], "the same error is no difference"
    both = changed(lambda d: d["hosts"]["head"].update(error="x", operations=[]))
    assert difference(document(), both) == [
        "head: -Render /etc/docker/daemon.json (upload /etc/docker/daemon.json (sha256 aaaaaaaaaaaa)), error now: x"
    ]
    bare = {"hosts": {"head": {"status": "planned"}}}
    assert difference(bare, changed(lambda d: d["hosts"].pop("worker-1"))) == [
        "head: +Render /etc/docker/daemon.json (upload /etc/docker/daemon.json (sha256 aaaaaaaaaaaa))"
    ]
    no_commands = changed(lambda d: d["hosts"]["head"]["operations"].append({"name": "Noop", "commands": []}))
    assert difference(document(), no_commands) == ["head: +Noop"]


def test_an_operation_repeated_three_times_is_three_operations():
    operation = {"name": "Restart", "commands": [SHELL]}
    three = {"hosts": {"head": {"status": "planned", "operations": [operation] * 3}}}
    two = {"hosts": {"head": {"status": "planned", "operations": [operation] * 2}}}
    assert difference(two, three) == ["head: +Restart ($ systemctl restart docker.service)"]
    long_command = {"name": "Long", "commands": [{"type": "shell", "command": "x" * 200, "sha256": "e"}]}
    added = difference(two, {"hosts": {"head": {"status": "planned", "operations": [operation] * 2 + [long_command]}}})
    assert added == [f"head: +Long ($ {'x' * 98})"], "a command is cut at 100 characters"


def test_a_fingerprint_covers_the_inventorys_hosts_groups_and_data(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('head = [("h1", {"ssh_port": 22})]\n')
    first = fingerprint(str(inventory))
    assert len(first) == 16 and fingerprint(str(inventory)) == first
    for text in (
        'head = [("h1", {"ssh_port": 23})]\n',
        'head = [("h2", {"ssh_port": 22})]\n',
        'workers = [("h1", {"ssh_port": 22})]\n',
    ):
        inventory.write_text(text)
        assert fingerprint(str(inventory)) != first, text
    inventory.write_text("head = [\n")
    with pytest.raises(PlanError, match=rf"^inventory {inventory} cannot be read: SyntaxError: "):
        fingerprint(str(inventory))
    inventory.write_text("raise SystemExit('no such lab')\n")
    with pytest.raises(PlanError, match=rf"^inventory {inventory}: no such lab$"):
        fingerprint(str(inventory))


class LocalCheckpoint(Checkpoint):
    """docker-installation's flags, with a deploy that touches only the state directory of this machine."""

    @property
    def deploy_file(self) -> str:
        return str(Path(__file__).parent / "fixtures" / "local_deploy.py")


LOCAL = LocalCheckpoint("docker-installation", "a test deploy", True, False)


@pytest.fixture
def local_inventory(tmp_path) -> str:
    inventory = tmp_path / "inventory.py"
    inventory.write_text('local = ["@local"]\n')
    return str(inventory)


def test_planning_asks_pyinfra_in_a_child_of_its_own_session_and_changes_nothing(
    local_inventory, tmp_path, monkeypatch
):
    monkeypatch.chdir(
        tmp_path
    )  # the child works in the repository wherever raydeploy was started (deploys import deploys.*)
    state = tmp_path / "state"
    plan = make_plan(local_inventory, LOCAL, state)
    assert plan.changes == {"@local": ["Make the marker", "Say where and how"]}
    assert plan.fingerprint == fingerprint(local_inventory) and plan.checkpoint == "docker-installation"
    said = f"$ echo {state.resolve()} own-session=True cwd={REPO} dies-with-parent=True"
    assert said in plan.describe(commands=True)
    assert not (state / "marker").exists()


def test_what_a_deploy_prints_without_a_newline_never_spoils_the_sessions_answer(local_inventory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "prompt").write_text("")
    said: list[str] = []
    plan = make_plan(local_inventory, LOCAL, state)
    assert plan.changes == {"@local": ["Make the marker", "Say where and how"]}
    execution = execute(local_inventory, LOCAL, said.append, state_dir=state, approved=plan)
    assert (execution.ok, execution.changed) == (True, 2)
    assert any("Continue? [y/N]" in line for line in said), said


def test_running_an_approved_plan_reports_each_operation(local_inventory, tmp_path):
    state = tmp_path / "state"
    plan = make_plan(local_inventory, LOCAL, state)
    said: list[str] = []
    execution = execute(local_inventory, LOCAL, said.append, state_dir=state, approved=plan)
    assert (execution.ok, execution.changed, execution.failed_hosts, execution.error) == (True, 2, [], "")
    assert [row[:3] for row in execution.rows] == [
        ("@local", "Make the marker", "changed"),
        ("@local", "Say where and how", "changed"),
    ]
    assert (state / "marker").exists() and "--> Beginning operation run..." in said


def test_a_plan_that_changed_since_its_approval_is_refused_and_nothing_runs(local_inventory, tmp_path):
    state = tmp_path / "state"
    plan = make_plan(local_inventory, LOCAL, state)
    state.mkdir(exist_ok=True)
    (state / "fail").write_text("")
    execution = execute(local_inventory, LOCAL, lambda line: None, state_dir=state, approved=plan)
    assert (execution.ok, execution.changed, execution.rows, execution.failed_hosts) == (False, 0, [], [])
    assert not (state / "marker").exists()
    assert execution.refused.changes == {"@local": ["Make the marker", "Say where and how", "Fail on purpose"]}
    assert (execution.refused.checkpoint, execution.refused.fingerprint) == ("docker-installation", plan.fingerprint)


def test_a_failing_operation_is_its_hosts_one_reason(local_inventory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "fail").write_text("")
    execution = execute(local_inventory, LOCAL, lambda line: None, state_dir=state, limit=["@local"], fail_percent=0)
    assert (execution.ok, execution.changed, execution.failed_hosts) == (False, 2, ["@local"])
    assert execution.reasons == {"@local": "Fail on purpose: disk is full"}
    assert execution.rows[-1][:3] == ("@local", "Fail on purpose", "failed")


def test_planning_on_an_inventory_pyinfra_cannot_load_says_what_it_printed(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = [("unreachable", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    with pytest.raises(PlanError) as failed:
        make_plan(str(inventory), LOCAL, tmp_path / "state")
    message = str(failed.value)
    assert message.startswith("planning docker-installation failed:\n")
    assert f"{REPO}/" not in message


def test_a_deploy_that_breaks_while_preparing_fails_its_host_with_its_own_words(local_inventory, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "raise").write_text("")
    execution = execute(local_inventory, LOCAL, lambda line: None, state_dir=state)
    reason = f"the deploy broke in {state.resolve()}"
    assert (execution.ok, execution.changed, execution.failed_hosts, execution.error) == (False, 0, ["@local"], "")
    assert execution.reasons == {"@local": reason}
    assert execution.rows == [("@local", "prepare", "failed", reason)]


def test_a_host_that_cannot_be_reached_fails_with_what_ssh_said_and_a_fix(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = ["@local", ("down", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    execution = execute(str(inventory), LOCAL, lambda line: None, state_dir=tmp_path / "state")
    reason = (
        "Could not connect ([Errno None] Unable to connect to port 1 on 127.0.0.1) (fix: SSH failed: check the "
        "host's ssh_hostname, ssh_port, ssh_user and ssh_key in the inventory, and that it is up)"
    )
    assert (execution.ok, execution.changed, execution.failed_hosts) == (False, 2, ["down"])
    assert execution.reasons == {"down": reason} and execution.rows[-1] == ("down", "connect", "failed", reason)
    assert execution.summary == f"down: {reason}"


def test_a_failure_nobody_explained_is_still_named_and_never_blank():
    assert (
        _last_line("\n  \n") == "failed" and _last_line(f"first\n {REPO}/deploys/x.py: last \n") == "deploys/x.py: last"
    )
    assert _host_error("down", []) == "failed"
    assert _host_error("down", ["    [other] Error: not mine", "    [down] Ready"]) == "failed"
    assert _host_error("down", ["    [down] Error: disk full", "    [down] fine"]) == "Error: disk full"
    assert hint("something nobody knows") == ""


def test_pyinfra_stopping_before_any_host_is_the_runs_error():
    stopped = _stopped_while_preparing({"hosts": {}, "message": f"{REPO}/deploys/x.py: no such deploy"})
    assert (stopped.ok, stopped.rows, stopped.failed_hosts, stopped.error) == (
        False,
        [],
        [],
        "deploys/x.py: no such deploy",
    )


def test_the_tail_of_what_pyinfra_printed_is_its_last_fifteen_lines():
    text = "\n".join(f"line {number}" for number in range(1, 21)) + "\n\n"
    assert _tail(text) == "\n".join(f"line {number}" for number in range(6, 21))


def test_pyinfra_stopping_the_run_is_its_error_unless_it_stopped_because_every_host_failed():
    row = {"host": "@local", "operation": "Touch", "result": "failed", "output": "no space left"}
    stopped = _results({"operations": [row], "failed_hosts": [], "stopped": "Deploy error: KeyError 'x'"}, [])
    assert (stopped.ok, stopped.error) == (False, "Deploy error: KeyError 'x'")
    every = {"operations": [row], "failed_hosts": ["@local"], "stopped": "No hosts remaining! (1 failed)"}
    assert (_results(every, []).ok, _results(every, []).error) == (False, "")
    assert _results({"operations": [], "failed_hosts": []}, []).ok


def test_a_plan_is_made_for_the_limited_hosts_with_the_actions_arguments(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = ["@local", ("down", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    plan = make_plan(str(inventory), LOCAL, tmp_path / "state", limit=["@local"], data={"purge_data": "true"})
    assert list(plan.hosts) == ["@local"] and plan.unreachable == []
    assert plan.document["data"] == {"purge_data": "true"}


class DyingCheckpoint(Checkpoint):
    """A deploy that kills pyinfra's process outright: no answer, nothing printed."""

    @property
    def deploy_file(self) -> str:
        return str(Path(self.description) / "dying_deploy.py")


class WrittenCheckpoint(Checkpoint):
    """docker-installation's flags, with the deploy file a test wrote (its description is the file's path)."""

    @property
    def deploy_file(self) -> str:
        return self.description


def written_deploy(path: Path, text: str) -> Checkpoint:
    path.write_text(text)
    return WrittenCheckpoint("docker-installation", str(path), True, False)


def test_planning_that_fails_for_an_unknown_reason_offers_no_fix_and_a_known_one_offers_its_fix(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('local = ["@local"]\n')
    (tmp_path / "dying_deploy.py").write_text("import os\nos._exit(3)\n")
    with pytest.raises(PlanError) as failed:
        make_plan(
            str(inventory), DyingCheckpoint("docker-installation", str(tmp_path), True, False), tmp_path / "state"
        )
    assert "fix:" not in str(failed.value) and not str(failed.value).endswith("XXXX")
    inventory.write_text('hosts = [("unreachable", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    with pytest.raises(PlanError) as failed:
        make_plan(str(inventory), LOCAL, tmp_path / "state")
    assert str(failed.value).endswith("\nfix: " + hint("SSH error"))


def test_an_inventorys_fingerprint_is_the_same_in_every_raydeploy_version(tmp_path):
    """Approvals hold the fingerprint of the inventory they were granted for: it must not change with an upgrade."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "from pathlib import Path\n"
        'head = [("h1", {"ssh_user": "ops", "ssh_port": 22, "key": Path("/k")})]\n'
        'workers = [("w1", {}), ("w2", {"ssh_port": 2222})]\n'
    )
    assert fingerprint(str(inventory)) == "56ae2090b7e54a33"
    assert digest_of({**document(), "data": {"purge_data": "true"}}) == "70fa6adf10c04388"


def test_running_for_limited_hosts_runs_only_on_them(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = ["@local", ("down", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    execution = execute(str(inventory), LOCAL, lambda line: None, limit=["@local"], state_dir=tmp_path / "state")
    assert execution.ok and execution.failed_hosts == [] and {row[0] for row in execution.rows} == {"@local"}


def test_the_sessions_answer_is_its_last_line_when_that_is_a_json_object():
    assert _answer('deploy code printed this\n{"plan": {"hosts": {}}}\n') == {"plan": {"hosts": {}}}
    assert _answer('{"plan": {}}\n[1, 2]\n') is None and _answer("not json") is None and _answer("") is None


def test_a_run_whose_session_dies_without_an_answer_fails_with_what_it_printed_or_its_exit_code(
    local_inventory, tmp_path
):
    (tmp_path / "dying_deploy.py").write_text("import os\nos._exit(3)\n")
    dying = DyingCheckpoint("docker-installation", str(tmp_path), True, False)
    silent = execute(local_inventory, dying, lambda line: None, state_dir=tmp_path / "state")
    assert (silent.ok, silent.changed, silent.rows, silent.failed_hosts) == (False, 0, [], [])
    assert silent.ok is False and silent.error.endswith("--> Preparing operation files...")  # pyinfra's last words
    (tmp_path / "dying_deploy.py").write_text(
        "import os, sys\nsys.stderr.write('first  \\nwriting /dev/sdX\\nCould not connect to the moon\\n')\n"
        "sys.stderr.flush()\nos._exit(3)\n"
    )
    logged = []
    said = execute(local_inventory, dying, logged.append, state_dir=tmp_path / "state")
    assert said.ok is False and said.error.endswith(
        f"first  \nwriting /dev/sdX\nCould not connect to the moon (fix: {hint('SSH error')})"
    )
    assert logged[-3:] == ["first  ", "writing /dev/sdX", "Could not connect to the moon"], "each line as printed"


RESTART = {"kind": "cluster-restart", "summary": "cluster-wide restart: Ray 2.59.0 -> 2.60.0 on 3 nodes"}


def test_a_disruption_is_in_the_digest_and_shown_first():
    plain = Plan("ray-deployment", "fp", document())
    disrupted = Plan("ray-deployment", "fp", changed(lambda d: d["hosts"]["head"].update(disruptions=[RESTART])))
    assert not plain.disruptive and disrupted.disruptive
    assert disrupted.digest != plain.digest
    assert disrupted.disruptions == {"head": [RESTART["summary"]]}
    assert disrupted.describe().splitlines()[1] == f"  DISRUPTIVE (head): {RESTART['summary']}"
    assert disrupted.as_dict()["disruptive"] is True


def test_an_actions_arguments_reach_the_run_as_host_data_and_the_approval_binds_them(local_inventory, tmp_path):
    state = tmp_path / "state"
    plan = make_plan(local_inventory, LOCAL, state, data={"greeting": "hello"})
    assert plan.changes == {"@local": ["Make the marker", "Say where and how", "Greet with hello"]}
    execution = execute(
        local_inventory, LOCAL, lambda line: None, state_dir=state, approved=plan, data={"greeting": "hello"}
    )
    assert execution.ok and [row[:3] for row in execution.rows][-1] == ("@local", "Greet with hello", "changed")
    other = execute(local_inventory, LOCAL, lambda line: None, state_dir=state, approved=plan, data={"greeting": "bye"})
    assert other.rows == [] and other.refused.document["data"] == {"greeting": "bye"}, "other arguments, another plan"


def test_a_run_over_its_fail_percent_stops_before_any_operation(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text('hosts = ["@local", ("down", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n')
    state = tmp_path / "state"
    execution = execute(str(inventory), LOCAL, lambda line: None, fail_percent=0, state_dir=state)
    stopped = "Over 0% of hosts failed (50%): more hosts could not be reached than --fail-percent allows"
    assert (execution.ok, execution.changed, execution.failed_hosts) == (False, 0, ["down"])
    assert execution.rows == [("down", "connect", "failed", execution.reasons["down"])]
    assert execution.reasons["down"].startswith("Could not connect") and "Traceback" not in execution.summary
    assert execution.error.startswith(stopped) and not (state / "marker").exists()


def test_the_session_has_no_input_to_wait_on(local_inventory, tmp_path):
    # A deploy (or pyinfra, for a password or a host key) asking a question fails at once: it never waits
    # for an answer, nor reads the wrapper's own input, here a pipe holding one.
    asking = written_deploy(tmp_path / "asking_deploy.py", "raise RuntimeError('answered ' + input())\n")
    read, write = os.pipe()
    os.write(write, b"hunter2\n")
    os.close(write)
    own_input = os.dup(0)
    os.dup2(read, 0)
    try:
        execution = execute(local_inventory, asking, lambda line: None, state_dir=tmp_path / "state")
    finally:
        os.dup2(own_input, 0)
        os.close(own_input)
        os.close(read)
    assert execution.reasons == {"@local": "EOF when reading a line"}


START_SESSION = """
import sys
from pathlib import Path
from types import SimpleNamespace
from raydeploy.plans import make_plan
make_plan(sys.argv[1], SimpleNamespace(name="docker-installation", deploy_file=sys.argv[2]), Path(sys.argv[3]))
"""


def test_the_session_dies_with_the_process_that_started_it(local_inventory, tmp_path):
    # kill -9 of the CLI (or of the API's process) must not leave pyinfra changing hosts on its own.
    state = tmp_path / "state"
    state.mkdir()
    sleeping = written_deploy(
        tmp_path / "sleeping_deploy.py",
        "import os, time\nwith open(os.environ['RAYDEPLOY_STATE_DIR'] + '/session.pid', 'w') as f:\n"
        "    f.write(str(os.getpid()))\ntime.sleep(60)\n",
    )
    wrapper = subprocess.Popen([sys.executable, "-c", START_SESSION, local_inventory, sleeping.deploy_file, str(state)])
    session = None
    try:
        deadline = time.monotonic() + 60
        while session is None and time.monotonic() < deadline:
            text = (state / "session.pid").read_text() if (state / "session.pid").exists() else ""
            session = int(text) if text else time.sleep(0.1)
        assert session is not None, "the session never started its deploy"
        wrapper.kill()
        wrapper.wait()
        deadline = time.monotonic() + 10
        while alive(session) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(session), "the session outlived the process that started it"
    finally:
        wrapper.kill()
        wrapper.wait()
        if session is not None and alive(session):
            os.kill(session, signal.SIGKILL)


def alive(pid: int) -> bool:
    """PID runs (a zombie nobody reaps has ended: in a container, PID 1 may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
