"""The command line's surface: help, and refusals of bad input before anything happens."""

from __future__ import annotations


def test_help_lists_every_command_with_a_description(raydeploy_cli):
    top = raydeploy_cli("--help", check=True)
    assert "lab" in top.stdout
    lab = raydeploy_cli("lab", "--help", check=True)
    for command in ("up", "status", "down", "ssh"):
        line = next(line for line in lab.stdout.splitlines() if line.strip().startswith(command + " "))
        assert len(line.split(None, 1)[1]) > 10, line
        assert "..." not in line, f"description cut short: {line}"


def test_bad_worker_count_is_a_usage_error_naming_the_range(raydeploy_cli):
    result = raydeploy_cli("lab", "up", "--workers", "9")
    assert result.returncode == 2
    assert "--workers" in result.stderr and "1<=x<=8" in result.stderr


def test_no_engine_reachable_is_one_clear_error(raydeploy_cli, tmp_path):
    result = raydeploy_cli(
        "lab",
        "up",
        "--name",
        "rdtest-noengine",
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock", "RAYDEPLOY_LAB_HOME": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "No Docker engine is reachable" in result.stderr
    assert "scripts/docker-engine" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_a_lab_says_to_run_lab_up(raydeploy_cli, tmp_path):
    result = raydeploy_cli("lab", "status", "--name", "rdtest-none", env={"RAYDEPLOY_LAB_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "run `raydeploy lab up`" in result.stderr


def test_lab_inventory_without_a_lab_fails_with_one_line(tmp_path):
    from tests.conftest import BIN, run_command

    result = run_command(
        [str(BIN / "pyinfra"), "-y", "inventories/lab.py", "exec", "--", "hostname"],
        env={"RAYDEPLOY_LAB_HOME": str(tmp_path), "RAYDEPLOY_LAB": "rdtest-none"},
    )
    assert result.returncode != 0
    assert "No lab named 'rdtest-none' is up" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
