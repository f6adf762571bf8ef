"""The command line's surface: help, and refusals of bad input before anything happens."""

from __future__ import annotations

import inspect
import shutil

import click
import pytest

from raydeploy.cli import main


def groups_of(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Group]]:
    """GROUP and every group under it, each with the words that call it."""
    found = [(path, group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += groups_of(command, (*path, name))
    return found


GROUPS = groups_of(main)


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[" ".join(("raydeploy", *path)) for path, _ in GROUPS])
def test_help_lists_every_command_with_its_whole_first_paragraph(raydeploy_cli, path, group):
    listing = raydeploy_cli(*path, "--help", env={"COLUMNS": "80"}, check=True).stdout.split("Commands:", 1)[1]
    assert not [line for line in listing.splitlines() if line.rstrip().endswith("...")], listing
    words = " ".join(listing.split())
    for name, command in group.commands.items():
        first_paragraph = " ".join(inspect.cleandoc(command.help).split("\n\n", 1)[0].split())
        assert f"{name} {first_paragraph}" in words, f"{name!r} is not listed with its whole description:\n{listing}"


def test_bad_worker_count_is_a_usage_error_naming_the_range(raydeploy_cli):
    result = raydeploy_cli("lab", "up", "--workers", "9")
    assert result.returncode == 2
    assert "--workers" in result.stderr and "1<=x<=8" in result.stderr


def test_no_docker_command_is_one_clear_error(raydeploy_cli, tmp_path):
    # A machine with no Docker at all: nothing named docker on PATH.
    result = raydeploy_cli(
        "lab", "up", "--name", "rdtest-nodocker", env={"PATH": str(tmp_path), "RAYDEPLOY_LAB_HOME": str(tmp_path)}
    )
    assert result.returncode == 1
    assert "The `docker` command is not installed" in result.stderr
    assert "scripts/docker-engine" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker client (no engine): none on PATH here")
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
