"""`raydeploy lab ...`: the local lab of real Debian hosts, for the demo and the integration tests."""

from __future__ import annotations

import json
import os
import time

import click

from raydeploy.lab import state as lab_state
from raydeploy.lab.engine import EngineError
from raydeploy.lab.images import DEFAULT_RAY_VERSION
from raydeploy.lab.lifecycle import MAX_WORKERS, MIN_WORKERS, Lab, LabError, all_lab_names, describe, ssh_command

name_option = click.option(
    "--name",
    envvar="RAYDEPLOY_LAB",
    default=lab_state.DEFAULT_LAB_NAME,
    show_default=True,
    help="Which lab (env RAYDEPLOY_LAB); several labs can live side by side.",
)


def _progress(message: str) -> None:
    click.echo(f"  {message}", err=True)


def _fail(error: Exception) -> click.ClickException:
    return click.ClickException(str(error))


@click.group()
def lab() -> None:
    """Run the local lab of real Debian hosts (systemd, sshd, a Docker Hub mirror)."""


@lab.command()
@click.option(
    "--workers",
    type=click.IntRange(MIN_WORKERS, MAX_WORKERS),
    default=2,
    show_default=True,
    help="How many worker hosts beside the head.",
)
@click.option(
    "--ray-version",
    metavar="VERSION",
    help=f"Ray release (from PyPI) to make the lab's current one. A new lab: {DEFAULT_RAY_VERSION} when not given. "
    "An existing lab: without it the lab keeps its version; with it, the version's image joins the others "
    "in the lab's mirror and the lab inventory's ray_image becomes it.",
)
@name_option
def up(workers: int, ray_version: str | None, name: str) -> None:
    """Create the lab or bring it to the asked size and Ray version.

    A second call with the same options changes nothing and says so. The lab's mirror keeps every
    Ray version it was given; `--ray-version` switches the current one (what the lab inventory
    gives as ray_image, as an operator edits it in a real inventory), and `raydeploy deploy`
    then moves the cluster to it.

    \b
    Examples:
      raydeploy lab up
      raydeploy lab up --workers 4
      raydeploy lab up --ray-version 2.59.0     # then: raydeploy deploy, to run 2.59.0
    """
    started = time.monotonic()
    click.echo(f"Bringing lab {name!r} up: 1 head + {workers} workers, Ray {_ray_shown(name, ray_version)}", err=True)
    try:
        _, report = Lab(name, progress=_progress).up(workers=workers, ray_version=ray_version)
    except (LabError, EngineError) as error:
        raise _fail(error) from error
    elapsed = time.monotonic() - started
    if report.changed:
        for line in describe(report):
            click.echo(f"  {line}")
        click.echo(f"Lab {name!r} is up ({elapsed:.1f} s).")
    else:
        click.echo(f"Lab {name!r} is already up as asked; nothing changed ({elapsed:.1f} s).")
    _echo_status(Lab(name).status())
    prefix = "" if name == lab_state.DEFAULT_LAB_NAME else f"RAYDEPLOY_LAB={name} "
    click.echo(f"Next: {prefix}pyinfra inventories/lab.py exec -- hostname")


def _ray_shown(name: str, asked: str | None) -> str:
    if asked:
        return asked
    try:
        return f"{lab_state.load(name).ray_version} (kept)"
    except lab_state.NoLabError:
        return DEFAULT_RAY_VERSION


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@name_option
def status(as_json: bool, name: str) -> None:
    """Show hosts, addresses, SSH ports, URLs and Ray versions.

    Lists each host's role, cluster address, SSH port and state, the URLs of the head's
    published services (Ray dashboard, Prometheus, Grafana), the Ray versions in the lab's
    mirror and the current one (the lab inventory's ray_image).

    \b
    Examples:
      raydeploy lab status
      raydeploy lab status --json | jq .urls
    """
    try:
        described = Lab(name).status()
    except (lab_state.NoLabError, EngineError) as error:
        raise _fail(error) from error
    if as_json:
        click.echo(json.dumps(described, indent=2))
    else:
        _echo_status(described)


def _echo_status(described: dict) -> None:
    click.echo(f"Lab {described['name']!r}: network {described['network']['subnet']}, Ray {described['ray_version']}")
    versions = ", ".join(described["ray_images"])
    click.echo(f"  Ray in the mirror: {versions}; current {described['ray_version']}: {described['ray_image']}")
    click.echo(f"  {'HOST':<10} {'ROLE':<8} {'CLUSTER ADDRESS':<16} {'SSH':<17} STATUS")
    for host in described["hosts"]:
        click.echo(
            f"  {host['name']:<10} {host['role']:<8} {host['cluster_address']:<16} {host['ssh']:<17} {host['status']}"
        )
    registry = described["registry"]
    click.echo(f"  mirror: {registry['mirror']} (on this machine {registry['published']}, {registry['status']})")
    for service, url in described["urls"].items():
        click.echo(f"  {service}: {url}")


@lab.command()
@click.option("--all", "every_lab", is_flag=True, help="Remove every lab on this machine, not only --name.")
@name_option
def down(every_lab: bool, name: str) -> None:
    """Remove the lab: containers, volumes, network, key.

    Everything is found by the label raydeploy.lab; nothing else is touched.

    Images and the mirror's storage stay cached for the next `lab up`.

    \b
    Examples:
      raydeploy lab down
      raydeploy lab down --all
    """
    try:
        names = all_lab_names(Lab(name).engine) if every_lab else [name]
        for lab_to_remove in names or [name]:
            removed = Lab(lab_to_remove, progress=_progress).down()
            counts = ", ".join(f"{len(items)} {kind}" for kind, items in removed.items())
            if any(removed.values()):
                click.echo(f"Lab {lab_to_remove!r} removed: {counts}.")
            else:
                click.echo(f"Lab {lab_to_remove!r} was not up; nothing to remove.")
    except EngineError as error:
        raise _fail(error) from error


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@name_option
def ssh(node: str, command: tuple[str, ...], name: str) -> None:
    """Log into a lab host as root, or run a command there.

    NODE is head, worker-1, worker-2, ...

    \b
    Examples:
      raydeploy lab ssh head
      raydeploy lab ssh worker-1 -- systemctl is-system-running
    """
    try:
        state = lab_state.load(name)
        host = state.host(node)
    except (lab_state.NoLabError, KeyError) as error:
        raise _fail(error.args[0] if isinstance(error, KeyError) else error) from error
    arguments = ssh_command(state, host, list(command))
    os.execvp(arguments[0], arguments)
