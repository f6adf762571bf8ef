"""The raydeploy wrapper on the deployed lab: approvals bound to plans, the lock, failure and resume, the audit trail."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.conftest import BIN, REPO
from tests.lab.conftest import DeployedCluster

RAY_IMAGE = "rayproject/ray:2.60.0-py311-cpu"


def raydeploy_runner(env: dict[str, str]):
    """A function running `raydeploy ARGS...` with ENV; every output is kept in its `outputs`."""

    def call(*args: str, check: bool = False):
        result = subprocess.run(
            [str(BIN / "raydeploy"), *args],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=900,
        )
        result.output = result.stdout + result.stderr
        call.outputs.append(result.output)
        if check:
            assert result.returncode == 0, result.output
        return result

    call.env, call.outputs = env, []
    return call


@pytest.fixture
def wrapper(deployed: DeployedCluster, tmp_path):
    """Run `raydeploy ...` against the deployed lab with a state directory of its own."""
    return raydeploy_runner({**deployed.lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path / "state")})


def plant(deployed: DeployedCluster, host: str, name: str) -> None:
    deployed.lab.host(host).check_output(f"docker run -d --name {name} --entrypoint sleep {RAY_IMAGE} infinity")


def remove(deployed: DeployedCluster, host: str, *names: str) -> None:
    deployed.lab.host(host).run(f"docker rm -f {' '.join(names)}")


def events(wrapper) -> list[dict]:
    return json.loads(wrapper("audit", "--json", check=True).stdout)


def test_a_destructive_checkpoint_waits_for_an_approval_bound_to_its_plan(deployed, wrapper):
    plant(deployed, "worker-1", "ray_head")
    try:
        planned = wrapper("plan", "cleanup-existing", "--json")
        assert planned.returncode == 2, planned.output  # Terraform's "changes"
        plan = json.loads(planned.stdout)[0]
        assert plan["hosts"]["worker-1"]["changes"] == 1
        # No terminal, no approval: exit 3 before any change, with the command that approves it.
        stopped = wrapper("deploy", "--only", "cleanup-existing")
        assert stopped.returncode == 3, stopped.output
        assert (
            "raydeploy approve cleanup-existing -i inventories/lab.py --by YOUR_NAME --reason WHY --acknowledge-risks"
            in stopped.output
        )
        assert "ray_head" in deployed.lab.host("worker-1").check_output("docker ps -a --format '{{.Names}}'")
        refused = wrapper("approve", "cleanup-existing", "--by", "alice", "--reason", "CHG-1")
        assert refused.returncode == 1 and "--acknowledge-risks" in refused.output
        approved = wrapper(
            "approve",
            "cleanup-existing",
            "--by",
            "alice",
            "--reason",
            "CHG-1",
            "--acknowledge-risks",
            "--json",
            check=True,
        )
        approval = json.loads(approved.stdout)
        assert approval["plan_digest"] == plan["digest"] and approval["status"] == "valid"
        # The plan changes before the run: the approval no longer counts, and the operator is told what changed.
        plant(deployed, "worker-2", "grafana")
        changed = wrapper("deploy", "--only", "cleanup-existing")
        assert changed.returncode == 3, changed.output
        assert f"was given for plan {plan['digest']}" in changed.output
        assert (
            "worker-2: +Clean up earlier installations | Remove a leftover container ($ docker rm --force grafana)"
            in changed.output
        )
        remove(deployed, "worker-2", "grafana")
        done = wrapper("deploy", "--only", "cleanup-existing")
        assert done.returncode == 0, done.output
        assert "approved by alice (CHG-1)" in done.output
        assert "ray_head" not in deployed.lab.host("worker-1").check_output("docker ps -a --format '{{.Names}}'")
        # Used once: it is not there for the next plan that needs one.
        listed = json.loads(wrapper("approvals", "--json", check=True).stdout)
        assert [a["status"] for a in listed] == ["used"]
        trail = [(e["event"], e["target"]) for e in events(wrapper)]
        for expected in (
            ("approval requested", "cleanup-existing"),
            ("approval refused", "cleanup-existing"),
            ("approval granted", "cleanup-existing"),
            ("approval used", "cleanup-existing"),
            ("checkpoint finished", "cleanup-existing"),
        ):
            assert expected in trail, trail
        assert wrapper("audit", "--verify").returncode == 0
    finally:
        remove(deployed, "worker-1", "ray_head")
        remove(deployed, "worker-2", "grafana")


CANARIES = {
    "ray-auth-token": "canary-ray-token-7c1f0e",
    "redis-password": "canary-redis-pass-52ab9d",
    "grafana-admin-password": "canary-grafana-pass-e03d41",
}
SSH_CANARY = "canary-ssh-key-passphrase-9b7a"


@pytest.fixture(scope="module")
def canary_lab(make_lab, tmp_path_factory):
    """A fresh lab whose secrets are known canary values, and an inventory that adds an SSH key passphrase."""
    lab = make_lab("wrapper")
    lab.up("--workers", "2")
    secrets = lab.home / lab.name / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    for name, value in CANARIES.items():
        (secrets / name).write_text(value + "\n")
        (secrets / name).chmod(0o600)
    folder = tmp_path_factory.mktemp("canary")
    inventory = folder / "inventory.py"
    inventory.write_text(
        "import runpy\n"
        f"_lab = runpy.run_path({str(REPO / 'inventories' / 'lab.py')!r})\n"
        f"head = [(name, {{**data, 'ssh_key_password': {SSH_CANARY!r}}}) for name, data in _lab['head']]\n"
        f"workers = [(name, {{**data, 'ssh_key_password': {SSH_CANARY!r}}}) for name, data in _lab['workers']]\n"
    )
    call = raydeploy_runner(
        {**lab.env, "RAYDEPLOY_INVENTORY": str(inventory), "RAYDEPLOY_STATE_DIR": str(folder / "state")}
    )
    call.lab, call.state = lab, folder / "state"
    yield call
    lab.down()  # its Ray nodes would load the machine for the rest of the session


def test_a_fresh_lab_stops_at_docker_installation_without_approval_then_deploys_after_approve(canary_lab):
    stopped = canary_lab("deploy")
    assert stopped.returncode == 3, stopped.output
    assert "docker-installation needs an approval for plan" in stopped.output
    assert "raydeploy approve docker-installation -i " in stopped.output
    assert not canary_lab.lab.host("worker-1").exists("docker"), "docker-installation changed a host unapproved"
    status = json.loads(canary_lab("status", "--json", check=True).stdout)
    assert status["last_run"]["status"] == "awaiting-approval"
    assert {row["checkpoint"]: row["status"] for row in status["checkpoints"]}["prerequisites-check"] == "succeeded"
    canary_lab("approve", "docker-installation", "--by", "alice", "--reason", "CHG-42", check=True)
    started = time.monotonic()
    done = canary_lab("deploy")
    assert done.returncode == 0, done.output
    print(f"full raydeploy deploy after approval: {time.monotonic() - started:.1f} s")
    assert "docker-installation: approved by alice (CHG-42)" in done.output
    # Progress: a line per checkpoint with its time, and a per-host table.
    assert re.search(r"ray-deployment: done, \d+ change\(s\) in [0-9.]+ s", done.output), done.output
    assert re.search(r"HOST\s+CHANGED\s+UNCHANGED\s+FAILED", done.output), done.output
    approvals = json.loads(canary_lab("approvals", "--json", check=True).stdout)
    assert [a["status"] for a in approvals] == ["used"]


def test_a_full_deploy_with_auto_approve_converges_and_validates(canary_lab):
    result = canary_lab("deploy", "--auto-approve")
    assert result.returncode == 0, result.output
    status = json.loads(canary_lab("status", "--json", check=True).stdout)
    assert status["last_run"]["status"] == "succeeded"
    assert {row["status"] for row in status["checkpoints"]} == {"succeeded"}
    history = json.loads(canary_lab("history", "--json", check=True).stdout)
    log = canary_lab("logs", history[0]["id"], check=True).stdout
    assert "--> Beginning operation run" in log and "ray smoke job" in log
    assert all(f"{name}: done, 0 change(s)" in result.output for name in ("docker-installation", "ray-deployment"))


def test_no_secret_reaches_any_output_log_audit_event_or_state(canary_lab):
    outputs = list(canary_lab.outputs)
    for args in (
        ["status", "--json"],
        ["history", "--json"],
        ["approvals", "--json"],
        ["audit", "--json"],
        ["audit", "--export", "-"],
        ["list-checkpoints", "--json"],
        ["plan", "--json"],
        ["validate", "--format", "json"],
    ):
        outputs.append(canary_lab(*args).output)
    state = canary_lab.state
    outputs += [path.read_text(errors="replace") for path in (state / "logs").glob("*.log")]
    database = sqlite3.connect(state / "state.db")
    outputs.append("\n".join(database.iterdump()))
    for secret in [*CANARIES.values(), SSH_CANARY]:
        leaks = [index for index, text in enumerate(outputs) if secret in text]
        assert not leaks, f"{secret} leaked into outputs {leaks}"
    # The canaries are the secrets in use: the deploy did use them.
    worker = canary_lab.lab.host("worker-1")
    assert worker.file("/etc/raydeploy/ray-auth-token").content_string == CANARIES["ray-auth-token"]


def test_an_unreachable_worker_fails_the_checkpoint_the_others_finish_and_resume_limits_to_it(
    deployed, wrapper, engine
):
    deployed.wait_until_settled()
    container = f"{deployed.lab.name}-worker-2"
    engine.run(["pause", container])  # the host stops answering mid-run
    try:
        failed = wrapper("deploy", "--only", "docker-installation")
    finally:
        engine.run(["unpause", container])
    assert failed.returncode == 1, failed.output
    assert "docker-installation failed on worker-2" in failed.output
    assert (
        "resume: raydeploy deploy -i inventories/lab.py --start-from docker-installation --limit worker-2"
        in failed.output
    )
    status = json.loads(wrapper("status", "--json", check=True).stdout)
    assert status["last_run"]["status"] == "failed" and json.loads(status["last_run"]["failed_hosts"]) == ["worker-2"]
    run = status["last_run"]["id"]
    operations = json.loads(wrapper("history", "--json", check=True).stdout)[0]
    assert operations["id"] == run
    # The others finished the checkpoint.
    assert {row["checkpoint"]: row["status"] for row in status["checkpoints"]}["docker-installation"] == "failed"
    deployed.wait_until_settled(timeout_s=180)
    resumed = wrapper("deploy", "--start-from", "docker-installation", "--limit", "worker-2")
    assert resumed.returncode == 0, resumed.output
    latest = json.loads(wrapper("history", "--json", check=True).stdout)[0]
    assert json.loads(latest["checkpoints"])[0] == "docker-installation" and latest["status"] == "succeeded"


def test_two_runs_at_once_one_is_refused_and_a_run_killed_in_ray_deployment_resumes_healthy(
    deployed, wrapper, tmp_path
):
    deployed.wait_until_settled()
    # Make ray-deployment take a while: the head's container must be made again and every node wait for it.
    deployed.lab.host("head").check_output("docker rm -f ray-head")
    first = subprocess.Popen(
        [str(BIN / "raydeploy"), "deploy", "--start-from", "ray-deployment"],
        cwd=REPO,
        env={**os.environ, **wrapper.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in first.stdout:
        seen.append(line)
        if "ray-deployment: running" in line:
            break
    lock = json.loads((tmp_path / "state" / "run.lock").read_text())
    second = wrapper("deploy", "--only", "prerequisites-check")
    assert second.returncode == 1 and f"run {lock['run_id']} holds the lock" in second.output, second.output
    time.sleep(1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stdout.close()
    resumed = wrapper("deploy", "--start-from", "ray-deployment")
    assert resumed.returncode == 0, "".join(seen) + resumed.output
    assert "ray-deployment was in progress when run" in resumed.output and "planning it again" in resumed.output
    runs = {run["id"]: run for run in json.loads(wrapper("history", "--json", check=True).stdout)}
    assert runs[lock["run_id"]]["status"] == "interrupted"
    trail = [e["event"] for e in events(wrapper)]
    assert "run interrupted" in trail and "lock released" in trail
    deployed.wait_until_settled()
    assert wrapper("validate").returncode == 0


def test_audit_verify_catches_an_edited_an_inserted_and_a_deleted_event(deployed, wrapper, tmp_path):
    wrapper("deploy", "--only", "prerequisites-check", check=True)
    assert wrapper("audit", "--verify").returncode == 0
    for number, tamper in enumerate(
        (
            "UPDATE audit SET actor='mallory' WHERE seq=2",
            "INSERT INTO audit SELECT seq + 1000, at, actor, event, target, details, prev_hash, hash FROM audit WHERE seq=1",
            "DELETE FROM audit WHERE seq=2",
        )
    ):
        copy = tmp_path / f"tampered-{number}"
        source = sqlite3.connect(tmp_path / "state" / "state.db")
        copy.mkdir()
        target = sqlite3.connect(copy / "state.db")
        source.backup(target)
        source.close()
        target.execute(tamper)
        target.commit()
        target.close()
        shutil.copy(tmp_path / "state" / "audit.head", copy / "audit.head")
        checked = wrapper("audit", "--verify", "--state-dir", str(copy))
        assert checked.returncode == 1 and "TAMPERED" in checked.output, (tamper, checked.output)


def run_in_terminal(wrapper, args: list[str], answer: str, timeout_s: float = 300) -> tuple[int, str]:
    """Run raydeploy on a pseudo-terminal, answer its prompt with ANSWER; (exit code, everything it printed)."""
    import pty
    import select

    main, child = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "raydeploy"), *args],
        cwd=REPO,
        env={**os.environ, **wrapper.env},
        stdin=child,
        stdout=child,
        stderr=child,
        start_new_session=True,
    )
    os.close(child)
    output, answered, deadline = b"", False, time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"Type its name" in output:
                os.write(main, answer.encode() + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    code = process.wait(timeout=30)
    os.close(main)
    return code, output.decode(errors="replace")


def test_at_a_terminal_a_destructive_plan_is_approved_only_by_typing_its_name(deployed, wrapper):
    plant(deployed, "worker-1", "ray_head")
    try:
        code, output = run_in_terminal(wrapper, ["deploy", "--only", "cleanup-existing"], answer="yes")
        assert code == 1 and "not approved at the prompt" in output, output
        assert "cleanup will remove container ray_head" in output  # the plan was shown before the question
        assert "ray_head" in deployed.lab.host("worker-1").check_output("docker ps -a --format '{{.Names}}'")
        code, output = run_in_terminal(wrapper, ["deploy", "--only", "cleanup-existing"], answer="cleanup-existing")
        assert code == 0, output
        assert "ray_head" not in deployed.lab.host("worker-1").check_output("docker ps -a --format '{{.Names}}'")
        trail = [(e["event"], e["details"].get("source") or e["details"].get("reason")) for e in events(wrapper)]
        assert ("plan rejected", "refused at the prompt") in trail and ("approval granted", "prompt") in trail
    finally:
        remove(deployed, "worker-1", "ray_head")
