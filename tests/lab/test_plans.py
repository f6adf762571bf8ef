"""An approval binds to exactly what will run: change what a checkpoint would do, and nothing runs.

Each test copies the project's tree, changes a template or a deploy there (not the inventory, not
an operation's name), and plans or runs from the copy on real lab hosts that are still fresh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO

IGNORED = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".raydeploy", "*.egg-info", ".ci")


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    copy = tmp_path / "tree"
    shutil.copytree(REPO, copy, ignore=IGNORED)
    return copy


def run_in(tree: Path, lab, *args: str) -> subprocess.CompletedProcess[str]:
    """A command run from TREE, with TREE's code (not the installed one) on the path."""
    env = {**os.environ, **lab.env, "PYTHONPATH": str(tree)}
    return subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True, timeout=600)


def raydeploy(tree: Path, lab, *args: str) -> subprocess.CompletedProcess[str]:
    return run_in(tree, lab, str(BIN / "raydeploy"), *args)


def plan_json(tree: Path, lab, checkpoint: str, state: Path) -> dict:
    result = raydeploy(tree, lab, "plan", checkpoint, "--json", "--state-dir", str(state))
    assert result.returncode in (0, 2), result.stdout + result.stderr
    return json.loads(result.stdout)[0]


def test_an_approval_stops_counting_when_a_template_changes_what_would_be_written(fresh_lab, tree_copy, tmp_path):
    state = tmp_path / "state"
    original = REPO
    approved = raydeploy(
        original,
        fresh_lab,
        "approve",
        "docker-installation",
        "--by",
        "alice",
        "--reason",
        "CHG-1",
        "--state-dir",
        str(state),
        "--json",
    )
    assert approved.returncode == 0, approved.stdout + approved.stderr
    template = tree_copy / "templates" / "docker" / "daemon.json.j2"
    template.write_text(
        template.read_text().replace('"log-driver": "json-file",', '"log-driver": "json-file",\n  "debug": true,')
    )

    plan = plan_json(tree_copy, fresh_lab, "docker-installation", state)
    assert plan["digest"] != json.loads(approved.stdout)["plan_digest"]
    uploads = [c for op in plan["plan"]["hosts"]["head"]["operations"] for c in op["commands"] if c["type"] == "upload"]
    assert uploads and all(set(c) == {"type", "dest", "sha256"} for c in uploads)  # a hash, never the content

    stopped = raydeploy(tree_copy, fresh_lab, "deploy", "--only", "docker-installation", "--state-dir", str(state))
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    for host in ("head", "worker-1", "worker-2"):
        assert f"{host}: Install Docker | Render /etc/docker/daemon.json: commands changed" in stopped.stderr
    assert not fresh_lab.host("head").exists("docker"), "an approval for another plan let docker-installation run"


def session_run(tree: Path, lab, checkpoint: str, state: Path, digest: str) -> subprocess.CompletedProcess[str]:
    """Run CHECKPOINT from TREE through raydeploy's pyinfra session, only if its plan has DIGEST."""
    return run_in(
        tree,
        lab,
        sys.executable,
        "-m",
        "raydeploy.pyinfra_session",
        "inventories/lab.py",
        f"deploys/{checkpoint}.py",
        "--checkpoint",
        checkpoint,
        "--execute",
        "--expect-digest",
        digest,
    )


def test_a_changed_docker_run_of_a_ray_container_changes_the_plan_and_the_run_refuses_it(
    fresh_lab, tree_copy, tmp_path
):
    state = tmp_path / "state"
    before = plan_json(REPO, fresh_lab, "ray-deployment", state)
    deploy_file = tree_copy / "deploys" / "ray_cluster.py"
    deploy_file.write_text(
        deploy_file.read_text().replace('"--disable-usage-stats",', '"--disable-usage-stats", "--log-style=record",', 1)
    )
    after = plan_json(tree_copy, fresh_lab, "ray-deployment", state)
    assert after["digest"] != before["digest"]
    from raydeploy.plans import difference

    assert "head: Ray cluster | Ray head container: commands changed" in difference(before["plan"], after["plan"])
    assert difference(before["plan"], after["plan"]) == ["head: Ray cluster | Ray head container: commands changed"]

    refused = session_run(tree_copy, fresh_lab, "ray-deployment", state, before["digest"])
    assert refused.returncode == 4, refused.stderr[-3000:]
    answer = json.loads(refused.stdout.strip().splitlines()[-1])
    assert answer["refused"] is True and answer["results"] is None
    assert "Starting operation" not in refused.stderr, "operations ran although the plan was not the expected one"


def test_a_checkpoint_run_out_of_order_says_which_checkpoint_comes_first(fresh_lab, tmp_path):
    result = raydeploy(
        REPO, fresh_lab, "checkpoint", "ray-deployment", "--limit", "worker-2", "--state-dir", str(tmp_path)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ray-deployment failed on worker-2" in result.stderr
    assert "Docker is not installed on this host: docker-installation comes first" in result.stderr
    assert "could not pull" not in result.stderr
    assert str(REPO) not in result.stderr, "the message names this machine's path of the project"
