"""`raydeploy validate`: is the cluster healthy, and what is wrong where. Exit 0 passed, 1 failed, 2 could not run."""

from __future__ import annotations

import json
import os
import sys

import click

from raydeploy.checkpoints import NAMES, get
from validate.inventory import InventoryError, load
from validate.runner import run

DEFAULT_INVENTORY = "inventories/lab.py"


def report_approval(name: str, inventory: str, state_dir: str | None, output: str) -> int:
    """Whether checkpoint NAME needs an approval and whether a valid one exists: 0 it may run, 1 it may not yet."""
    from raydeploy.approvals import Approvals
    from raydeploy.runner import state_dir_for
    from raydeploy.state import StateStore

    checkpoint = get(name)
    directory = state_dir_for(inventory, state_dir)
    valid = []
    if directory.joinpath("state.db").exists():
        valid = [a for a in Approvals(StateStore(directory)).all(name) if a["status"] == "valid"]
    approval = valid[0] if valid else None
    answer = {
        "checkpoint": checkpoint.name,
        "approval_required": checkpoint.approval_required,
        "destructive": checkpoint.destructive,
        "state_dir": str(directory),
        "approval": None
        if approval is None
        else {key: approval[key] for key in ("id", "approved_by", "reason", "expires_at", "plan_digest", "source")},
        "may_run": not checkpoint.approval_required or approval is not None,
    }
    if output == "json":
        click.echo(json.dumps(answer, indent=2))
    else:
        click.echo(f"{checkpoint.name}: {checkpoint.description}")
        click.echo(f"  approval required: {'yes' if checkpoint.approval_required else 'no'}")
        if checkpoint.destructive:
            click.echo("  destructive: yes (an approval must acknowledge the risks)")
        if not checkpoint.approval_required:
            click.echo("  may run without approval")
        elif approval is None:
            click.echo(f"  valid approval: none in {directory} (raydeploy approve {name} --by ... --reason ...)")
        else:
            click.echo(
                f"  valid approval: {approval['id']} by {approval['approved_by']} until {approval['expires_at']} "
                f"for plan {approval['plan_digest']} (it counts while `raydeploy plan {name}` shows that digest)"
            )
    return 0 if answer["may_run"] else 1


@click.command()
@click.option(
    "-i",
    "--inventory",
    default=lambda: os.environ.get("RAYDEPLOY_INVENTORY", DEFAULT_INVENTORY),
    show_default=f"$RAYDEPLOY_INVENTORY or {DEFAULT_INVENTORY}",
    help="pyinfra inventory file: the hosts and their settings, as the deploys use them.",
)
@click.option("--checkpoint", type=click.Choice(NAMES), help="Check only what this checkpoint deploys.")
@click.option("--health-only", is_flag=True, help="Only the HTTP health checks (Ray dashboard, Prometheus, Grafana).")
@click.option(
    "--approval-check",
    metavar="NAME",
    type=click.Choice(NAMES),
    help="Does checkpoint NAME need an approval, and is there one?",
)
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--state-dir", envvar="RAYDEPLOY_STATE_DIR", help="The wrapper's state directory (for --approval-check).")
def validate(
    inventory: str,
    checkpoint: str | None,
    health_only: bool,
    approval_check: str | None,
    output: str,
    state_dir: str | None,
) -> None:
    """Prove the cluster works: testinfra checks over SSH, HTTP checks, and a Ray job on every node.

    \b
    Examples:
      raydeploy validate                              # everything, on inventories/lab.py
      raydeploy validate -i inventories/prod.py --format json
      raydeploy validate --health-only                # the fast HTTP checks only
      raydeploy validate --checkpoint ray-deployment
      raydeploy validate --approval-check cleanup-existing

    Exit status: 0 every check passed (or its component is turned off: "not deployed"), 1 a check
    failed or a host was unreachable, 2 validation could not run (bad arguments, unreadable inventory).
    """
    if approval_check:
        sys.exit(report_approval(approval_check, inventory, state_dir, output))
    if health_only and checkpoint:
        raise click.UsageError("--health-only and --checkpoint exclude each other")
    from raydeploy.runner import state_dir_for

    try:
        loaded = load(inventory, str(state_dir_for(inventory, state_dir)))
    except InventoryError as error:
        cannot_run = click.ClickException(str(error))
        cannot_run.exit_code = 2
        raise cannot_run from None
    report = run(loaded, scope="health" if health_only else checkpoint or "all")
    click.echo(report.as_json() if output == "json" else report.as_text())
    sys.exit(0 if report.ok else 1)
