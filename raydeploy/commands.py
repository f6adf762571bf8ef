"""The wrapper's commands: deploy, checkpoint, plan, approvals, status, history, logs, audit, reset, unlock."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path

import click

from raydeploy import runner
from raydeploy.approvals import ApprovalError, Approvals, parse_ttl
from raydeploy.audit import AuditKeyError, AuditTrail
from raydeploy.checkpoints import ACTION_NAMES, CHECKPOINTS, NAMES, check_arguments, get
from raydeploy.host_names import UnknownHosts, check_limit
from raydeploy.host_records import inventory_notices
from raydeploy.node_actions import removal_data, removal_refusals
from raydeploy.node_groups import describe as describe_node
from raydeploy.plans import PlanError, make_plan
from raydeploy.secret_access import SHOWABLE, SecretUnavailable, reveal
from raydeploy.state import LockHeld, StateError, StateStore

DEFAULT_INVENTORY = "inventories/lab.py"


def who_am_i() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return f"uid {os.getuid()}"


def inventory_option(function):
    function = click.option(
        "-i",
        "--inventory",
        default=lambda: os.environ.get("RAYDEPLOY_INVENTORY", DEFAULT_INVENTORY),
        show_default=f"$RAYDEPLOY_INVENTORY or {DEFAULT_INVENTORY}",
        help="pyinfra inventory file of the cluster.",
    )(function)
    return click.option(
        "--state-dir",
        envvar="RAYDEPLOY_STATE_DIR",
        help="State directory (runs, approvals, audit). Default: .raydeploy/ beside the inventory.",
    )(function)


def json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(function)


def existing_inventory(inventory: str) -> str:
    if not Path(inventory).is_file():
        raise click.UsageError(f"inventory {inventory}: no such file (give one with -i)")
    return inventory


def open_store(inventory: str, state_dir: str | None, must_exist_inventory: bool = True) -> StateStore:
    if must_exist_inventory:
        existing_inventory(inventory)
    try:
        return StateStore(runner.state_dir_for(inventory, state_dir))
    except (StateError, AuditKeyError, OSError) as error:
        raise click.ClickException(str(error)) from None


def known_limit(inventory: str, limit: tuple[str, ...]) -> list[str]:
    """--limit's hosts once each is one of INVENTORY's: a usage error naming the others and listing the
    inventory's hosts, before a run is recorded or a host contacted (pyinfra would stop with a traceback)."""
    try:
        check_limit(inventory, limit)
    except UnknownHosts as problem:
        raise click.BadParameter(f"{problem} (see {inventory})", param_hint="--limit") from None
    except PlanError as problem:
        raise click.ClickException(str(problem)) from None
    return list(limit)


def refuse_removal(inventory: str, name: str | None, data: dict[str, str]) -> None:
    """A usage error when NAME is remove-node and the inventory already says its hosts cannot be removed
    (unknown, the head, the monitoring host): said before any SSH, so even with every host unreachable."""
    from validate.inventory import InventoryError

    try:
        problems = removal_refusals(existing_inventory(inventory), name or "", data)
    except InventoryError as error:
        raise click.ClickException(str(error)) from None
    if problems:
        raise click.UsageError("remove-node refused, nothing was changed:\n" + "\n".join(problems))


def separation_default() -> bool:
    return os.environ.get("RAYDEPLOY_SEPARATION_OF_DUTIES", "").lower() in ("1", "true", "yes", "on")


def approval_options(requested: str, approved: str = "it"):
    """--auto-approve and --separation-of-duties, worded for what a command asks approval of: whoever
    requests REQUESTED cannot approve APPROVED."""

    def add(function):
        function = click.option("--auto-approve", is_flag=True, help="Approve the plan yourself (recorded as such).")(
            function
        )
        return click.option(
            "--separation-of-duties/--no-separation-of-duties",
            default=separation_default,
            show_default="$RAYDEPLOY_SEPARATION_OF_DUTIES or off",
            help=f"Whoever requests {requested} cannot approve {approved}.",
        )(function)

    return add


def run_options(function):
    function = click.option("--limit", multiple=True, metavar="HOST", help="Only these hosts (repeatable).")(function)
    function = click.option(
        "--fail-percent",
        type=click.IntRange(0, 100),
        help="Stop a checkpoint early once more than this % of hosts failed.",
    )(function)
    return approval_options("a run", "its destructive checkpoint")(function)


def _run(
    inventory,
    state_dir,
    checkpoints,
    auto_approve,
    limit,
    fail_percent,
    separation_of_duties,
    data=None,
    rollback_on_failure=False,
) -> None:
    store = open_store(inventory, state_dir)
    options = runner.RunOptions(
        inventory=inventory,
        store=store,
        checkpoints=checkpoints,
        requested_by=who_am_i(),
        command=" ".join(["raydeploy", *sys.argv[1:]]),
        auto_approve=auto_approve,
        interactive=runner.interactive(),
        limit=known_limit(inventory, limit),
        fail_percent=fail_percent,
        separation_of_duties=separation_of_duties,
        data=data or {},
        rollback_on_failure=rollback_on_failure,
    )
    try:
        run_id = runner.deploy(options)  # a stopped run raises RunStopped, a ClickException with its exit code
    except LockHeld as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"run {run_id} succeeded")


@click.command()
@inventory_option
@run_options
@click.option("--start-from", type=click.Choice(NAMES), help="Resume: run this checkpoint and the ones after it.")
@click.option("--only", multiple=True, type=click.Choice(NAMES), help="Run only these checkpoints (repeatable).")
@click.option(
    "--rollback-on-failure",
    is_flag=True,
    help="When a checkpoint fails after this run changed something, go back to the last good recorded spec "
    "by itself (raydeploy rollback), validate, and report the run as failed and rolled back.",
)
def deploy(
    inventory, state_dir, limit, fail_percent, auto_approve, separation_of_duties, start_from, only, rollback_on_failure
):
    """Run the checkpoints in order, asking for approval where a checkpoint needs one.

    \b
    Examples:
      raydeploy deploy                                   # the lab; prompts at each approval
      raydeploy deploy -i inventories/prod.py --auto-approve
      raydeploy deploy --start-from ray-deployment --limit worker-2
      raydeploy deploy --rollback-on-failure             # an upgrade that goes back by itself if it fails

    Exit status: 0 done, 1 a checkpoint failed (the resume command is printed), 2 bad arguments,
    3 an approval is missing and there is no terminal to ask at (nothing was changed by that checkpoint).
    """
    if start_from and only:
        raise click.UsageError("--start-from and --only exclude each other")
    _run(
        inventory,
        state_dir,
        runner.select(start_from, list(only)),
        auto_approve,
        limit,
        fail_percent,
        separation_of_duties,
        rollback_on_failure=rollback_on_failure,
    )


@click.command()
@click.argument("name", type=click.Choice(NAMES))
@inventory_option
@run_options
def checkpoint(name, inventory, state_dir, limit, fail_percent, auto_approve, separation_of_duties):
    """Run one checkpoint (with its approval, when it needs one).

    \b
    Example:
      raydeploy checkpoint docker-installation --auto-approve
    """
    _run(inventory, state_dir, [name], auto_approve, limit, fail_percent, separation_of_duties)


@click.command("remove-node")
@click.argument("hosts", nargs=-1, required=True)
@inventory_option
@click.option(
    "--drain-timeout",
    default="5m",
    show_default=True,
    help="How long running tasks and actors get to finish or move (30s, 5m, 1h).",
)
@click.option(
    "--remove-on-drain-timeout",
    is_flag=True,
    help="Remove the node even if its drain times out (the work still running there is cut off and named).",
)
@approval_options("the removal")
def remove_node(
    inventory, state_dir, hosts, drain_timeout, remove_on_drain_timeout, auto_approve, separation_of_duties
):
    """Drain worker HOSTS through Ray, then remove raydeploy's containers there and stop Prometheus
    scraping them (destructive: needs an approval with the risks acknowledged).

    The hosts must still be in the inventory (raydeploy reaches them through it); delete them from it
    afterwards. The head is refused: that is `raydeploy destroy`.

    \b
    Examples:
      raydeploy remove-node worker-2
      raydeploy remove-node worker-2 worker-3 --drain-timeout 10m

    Exit status: 0 removed, 1 failed (a drain that timed out without --remove-on-drain-timeout removes
    nothing), 2 bad arguments, 3 waiting for approval (the approve command is printed).
    """
    try:
        data = removal_data(list(hosts), drain_timeout, remove_on_drain_timeout)
    except ValueError as problem:
        raise click.BadParameter(str(problem), param_hint="--drain-timeout") from None
    refuse_removal(inventory, "remove-node", data)
    _run(inventory, state_dir, ["remove-node"], auto_approve, (), 0, separation_of_duties, data)


@click.command()
@inventory_option
@click.option("--to", "run_id", metavar="RUN_ID", help="The run whose recorded spec to go back to (see history).")
@approval_options("a rollback that restarts the cluster")
def rollback(inventory, state_dir, run_id, auto_approve, separation_of_duties):
    """Go back to the images and settings a successful run recorded: by default the latest recorded
    spec that differs from the inventory's. A change of Ray release restarts every node together, so
    that plan needs an approval with the risks acknowledged, as an upgrade does.

    The inventory is not edited: the next `raydeploy deploy` goes forward to it again.

    \b
    Examples:
      raydeploy rollback
      raydeploy rollback --to 20261130T101500Z-1a2b3c --auto-approve

    Exit status: 0 rolled back, 1 failed or nothing to go back to, 2 bad arguments, 3 waiting for approval.
    """
    from deploys.recorded_specs import SpecError, read_spec
    from raydeploy.converged import rollback_candidate

    store = open_store(inventory, state_dir)
    try:
        target = run_id or rollback_candidate(inventory, str(store.directory))
        if target is None:
            raise click.ClickException(
                "nothing to roll back to: no recorded spec differs from the inventory's (see raydeploy history)"
            )
        read_spec(store.directory, target)
    except SpecError as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(f"rolling back to the spec run {target} recorded")
    _run(inventory, state_dir, ["rollback"], auto_approve, (), 0, separation_of_duties, {"rollback_to": target})


@click.command("list-checkpoints")
@inventory_option
@json_option
def list_checkpoints(inventory, state_dir, as_json):
    """The checkpoints: name, what it does, approval required, destructive, last result.

    \b
    Example:
      raydeploy list-checkpoints --json
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    rows = []
    for cp in CHECKPOINTS:
        last = store.last_result(cp.name)
        rows.append(
            {
                "name": cp.name,
                "description": cp.description,
                "approval_required": cp.approval_required,
                "approval_if_disruptive": cp.may_disrupt,
                "destructive": cp.destructive,
                "last_result": last["status"] if last else None,
                "last_run": last["run_id"] if last else None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'CHECKPOINT':<22} {'APPROVAL':<13} {'DESTRUCTIVE':<12} {'LAST RESULT':<18} DESCRIPTION")
    for row in rows:
        approval = "yes" if row["approval_required"] else "if disruptive" if row["approval_if_disruptive"] else "no"
        click.echo(
            f"{row['name']:<22} {approval:<13} "
            f"{'YES' if row['destructive'] else 'no':<12} {row['last_result'] or '-':<18} {row['description']}"
        )


def action_data(items: tuple[str, ...], name: str | None) -> dict[str, str]:
    """--with KEY=VALUE items as host data for NAME; a bad item, or a key NAME does not take, is a
    usage error naming it."""
    data = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--with")
        data[key.strip()] = value
    for each in [name] if name else NAMES:
        try:
            check_arguments(each, data)
        except ValueError as problem:
            raise click.BadParameter(str(problem), param_hint="--with") from None
    return data


with_option = click.option(
    "--with",
    "with_data",
    multiple=True,
    metavar="KEY=VALUE",
    help="An action's arguments, as the run that stopped for this approval printed them.",
)


@click.command()
@click.argument("name", required=False, type=click.Choice(NAMES + ACTION_NAMES))
@inventory_option
@click.option("--limit", multiple=True, metavar="HOST", help="Only these hosts.")
@click.option("--commands", "show_commands", is_flag=True, help="Show each operation's commands too.")
@with_option
@json_option
def plan(name, inventory, state_dir, limit, show_commands, with_data, as_json):
    """What each checkpoint would change, on which host, and the plan's digest (a dry run).

    --json gives each plan's document: per host, per operation, the commands and file hashes the
    digest covers (secrets redacted), and the notes beside them; and in `notices` the hosts a run
    deployed that have left the inventory (or that remove-node removed and it still names).

    \b
    Examples:
      raydeploy plan cleanup-existing
      raydeploy plan docker-installation --commands
      raydeploy plan --json

    Exit status (as Terraform's detailed exit codes): 0 no changes, 2 changes, 1 error.
    """
    existing_inventory(inventory)
    directory = runner.state_dir_for(inventory, state_dir)
    data = action_data(with_data, name)
    refuse_removal(inventory, name, data)
    try:
        limit = known_limit(inventory, limit)
        plans = [make_plan(inventory, get(each), directory, limit, data) for each in ([name] if name else NAMES)]
    except PlanError as error:
        raise click.ClickException(str(error)) from None
    # A plan never creates a state directory: without one, no host was ever deployed from it.
    remembered = open_store(inventory, state_dir).hosts() if (directory / "state.db").is_file() else []
    notices = inventory_notices(inventory, remembered)
    if as_json:
        click.echo(json.dumps([p.as_dict() | {"notices": notices} for p in plans], indent=2))
    else:
        for each in plans:
            click.echo(each.describe(commands=show_commands))
        for row in runner.inventory_nodes(inventory):
            click.echo(f"node: {describe_node(row)}")
        for notice in notices:
            click.echo(f"host: {notice}")
    sys.exit(2 if any(p.has_changes for p in plans) else 0)


@click.command()
@click.argument("name", type=click.Choice(NAMES + ACTION_NAMES))
@inventory_option
@click.option("--by", "approved_by", required=True, help="Who approves.")
@click.option("--reason", required=True, help="Why (a change ticket, say).")
@click.option("--acknowledge-risks", is_flag=True, help="Required for a destructive checkpoint.")
@click.option("--ttl", default="1h", show_default=True, help="How long the approval lasts (30m, 1h, 2d).")
@with_option
@json_option
def approve(name, inventory, state_dir, approved_by, reason, acknowledge_risks, ttl, with_data, as_json):
    """Approve NAME's current plan (computed now, shown, and bound to the approval).

    \b
    Example:
      raydeploy approve cleanup-existing --by alice --reason "CHG-1234" --acknowledge-risks
    """
    store = open_store(inventory, state_dir)
    try:
        duration = parse_ttl(ttl)
        data = action_data(with_data, name)
        refuse_removal(inventory, name, data)
        current = make_plan(inventory, get(name), store.directory, data=data)
        click.echo(current.describe(), err=as_json)
        approval = Approvals(store).grant(
            current, approved_by, reason, acknowledge_risks, duration, source="cli", actor=who_am_i()
        )
    except (ApprovalError, PlanError) as error:
        raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(json.dumps(approval, indent=2))
    else:
        click.echo(
            f"approval {approval['id']} for {name}, plan {approval['plan_digest']}, by {approval['approved_by']}, "
            f"valid until {approval['expires_at']} (used once)"
        )


@click.command()
@click.argument("name", type=click.Choice(NAMES + ACTION_NAMES))
@inventory_option
@click.option("--by", "rejected_by", required=True, help="Who rejects.")
@click.option("--reason", required=True, help="Why.")
@with_option
def reject(name, inventory, state_dir, rejected_by, reason, with_data):
    """Reject NAME's current plan: open approvals for it are closed; audited.

    \b
    Example:
      raydeploy reject cleanup-existing --by bob --reason "not during business hours"
    """
    store = open_store(inventory, state_dir)
    try:
        data = action_data(with_data, name)
        refuse_removal(inventory, name, data)
        current = make_plan(inventory, get(name), store.directory, data=data)
        Approvals(store).reject(current, rejected_by, reason)
    except (ApprovalError, PlanError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{name}: plan rejected by {rejected_by}")


@click.command()
@click.argument("approval_id")
@inventory_option
@click.option("--by", "revoked_by", required=True, help="Who revokes.")
@click.option("--reason", required=True, help="Why.")
def revoke(approval_id, inventory, state_dir, revoked_by, reason):
    """Revoke an approval before it is used; audited.

    \b
    Example:
      raydeploy revoke 3f2a9c0d1e7b --by alice --reason "plan changed"
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    try:
        Approvals(store).revoke(approval_id, revoked_by, reason)
    except ApprovalError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"approval {approval_id} revoked")


@click.command()
@inventory_option
@click.option("--checkpoint", "name", type=click.Choice(NAMES), help="Only this checkpoint's approvals.")
@json_option
def approvals(inventory, state_dir, name, as_json):
    """Approvals: checkpoint, plan digest, who, why, until when, state (valid, used, expired, revoked, rejected).

    \b
    Example:
      raydeploy approvals --checkpoint cleanup-existing
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    rows = Approvals(store).all(name)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no approvals")
    for row in rows:
        click.echo(
            f"{row['id']}  {row['checkpoint']:<20} {row['status']:<8} plan {row['plan_digest']}  by {row['approved_by']}"
            f" until {row['expires_at']}  ({row['source']}) {json.dumps(row['reason'])}"
        )


@click.command()
@inventory_option
@json_option
def status(inventory, state_dir, as_json):
    """The last run, each checkpoint's last result, what failed and the command to resume.

    \b
    Example:
      raydeploy status --json
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    report = runner.status_report(store, inventory)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    run = report["last_run"]
    click.echo(f"state: {report['state_dir']}")
    if run is None:
        click.echo("no run yet: raydeploy deploy")
    else:
        click.echo(f"last run {run['id']}: {run['status']} (by {run['requested_by']}, {run['started_at']})")
        if run["failed_checkpoint"]:
            click.echo(f"  stopped at {run['failed_checkpoint']}: {run['error']}")
    for row in report["checkpoints"]:
        click.echo(f"  {row['checkpoint']:<22} {row['status']}")
    if report.get("lock"):
        click.echo(f"locked by run {report['lock']['run_id']} (lock {report['lock']['lock_id']})")
    if report.get("resume"):
        click.echo(f"resume: {report['resume']}")
    for notice in report.get("hosts", []):
        click.echo(f"host: {notice}")
    for row in report.get("nodes", []):
        click.echo(f"node: {describe_node(row)}")


@click.command()
@inventory_option
@click.option("--limit", "count", default=20, show_default=True, help="How many runs.")
@json_option
def history(inventory, state_dir, count, as_json):
    """Past runs, newest first.

    \b
    Example:
      raydeploy history --limit 5
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    runs = store.runs(count)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    for run in runs:
        click.echo(f"{run['id']}  {run['status']:<18} {run['requested_by']:<10} {run['command']}")


@click.command()
@click.argument("run_id")
@inventory_option
def logs(run_id, inventory, state_dir):
    """Everything pyinfra printed during run RUN_ID.

    \b
    Example:
      raydeploy logs 20261128T160000Z-1a2b3c
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    path = store.log_path(Path(run_id).name)
    if not path.is_file():
        known = ", ".join(run["id"] for run in store.runs(5)) or "none"
        raise click.ClickException(f"no log for run {run_id} (recent runs: {known})")
    click.echo(path.read_text(), nl=False)


def parse_anchor(_context, _parameter, values: tuple[str, ...]) -> list[tuple[int, str]]:
    """SEQ:HASH (or `SEQ HASH`, as `audit --head` prints it) -> (seq, hash)."""
    anchors = []
    for value in values:
        seq, _, digest = value.strip().replace(" ", ":", 1).partition(":")
        if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise click.BadParameter(f"{value!r} is not SEQ:HASH (as `raydeploy audit --head` prints it)")
        anchors.append((int(seq), digest))
    return anchors


@click.command()
@inventory_option
@click.option(
    "--verify", is_flag=True, help="Check the hash chain: exit 1 if an event was edited, inserted or deleted."
)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    callback=parse_anchor,
    metavar="SEQ:HASH",
    help="With --verify: event SEQ must still have exactly this hash, copied earlier from --head (repeatable).",
)
@click.option("--head", "show_head", is_flag=True, help="Print the newest event's SEQ HASH, to keep somewhere else.")
@click.option(
    "--export",
    "export_to",
    type=click.Path(dir_okay=False, writable=True),
    help="Write JSON lines to this file ('-' for stdout).",
)
@click.option("--limit", "count", type=int, help="Only the newest events.")
@json_option
def audit(inventory, state_dir, verify, anchors, show_head, export_to, count, as_json):
    """The audit trail: who did what, where, when (UTC).

    \b
    Examples:
      raydeploy audit --limit 20
      raydeploy audit --verify
      raydeploy audit --head                     # copy its SEQ HASH into a ticket or a log server
      raydeploy audit --verify --anchor 42:9f86d08...
      raydeploy audit --export audit.jsonl
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    trail = store.audit
    if anchors and not verify:
        raise click.UsageError("--anchor is checked by --verify: add --verify")
    if verify:
        verify_trail(trail, anchors)
    if show_head:
        print_head(trail, as_json)
        return
    events = trail.events(count)
    if export_to:
        lines = "".join(event.as_json() + "\n" for event in events)
        if export_to == "-":
            click.echo(lines, nl=False)
        else:
            Path(export_to).write_text(lines)
            click.echo(f"{len(events)} events written to {export_to}")
        return
    if as_json:
        click.echo(json.dumps([json.loads(event.as_json()) for event in events], indent=2))
        return
    for event in events:
        click.echo(
            f"{event.seq:>5} {event.at} {event.actor:<12} {event.event:<20} {event.target:<22} {json.dumps(event.details)}"
        )


def verify_trail(trail: AuditTrail, anchors: list[tuple[int, str]]) -> None:
    """Say every problem and exit: 0 when the trail is intact and matches every anchor, else 1."""
    problems = trail.verify(anchors)
    for problem in problems:
        click.echo(f"audit: {problem}", err=True)
    checked = f"{len(trail.events())} events checked" + (f", {len(anchors)} anchors" if anchors else "")
    click.echo(f"audit trail {'INTACT' if not problems else 'TAMPERED'}: {checked}")
    sys.exit(1 if problems else 0)


def print_head(trail: AuditTrail, as_json: bool) -> None:
    head = trail.head()
    if head is None:
        raise click.ClickException("the audit trail has no events yet: there is no head to anchor")
    click.echo(json.dumps({"seq": head[0], "hash": head[1]}) if as_json else f"{head[0]} {head[1]}")


@click.command()
@inventory_option
@click.option("--yes", is_flag=True, help="Do not ask.")
def reset(inventory, state_dir, yes):
    """Forget runs, their results and logs (approvals and the audit trail stay).

    \b
    Example:
      raydeploy reset --yes
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    held = store.current_lock()
    if held:
        raise click.ClickException(f"run {held.run_id} is in progress (lock {held.lock_id}); not now")
    if not yes and not click.confirm(f"Forget every run recorded in {store.directory}?", default=False):
        click.echo("nothing reset")
        return
    counts = store.reset()
    store.audit.append(who_am_i(), "reset", str(store.directory), **counts)
    click.echo(f"reset {store.directory}: {counts['runs']} runs forgotten; approvals and the audit trail kept")


@click.command()
@inventory_option
def unlock(inventory, state_dir):
    """Say who holds the run lock.

    A run's lock goes when its process ends (flock), so there is nothing to break: a run that hangs
    is stopped by stopping its process.

    \b
    Example:
      raydeploy unlock
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    held = store.current_lock()
    if held is None:
        click.echo(f"{store.directory} is not locked")
        return
    raise click.ClickException(
        f"run {held.run_id} holds the lock (pid {held.pid} on {held.hostname}, since {held.started_at}) and its "
        f"process is alive; if that run hangs, stop it (on {held.hostname}: kill {held.pid}) and the lock goes with it"
    )


@click.command()
@click.argument("hosts", nargs=-1, metavar="[HOST]...")
@inventory_option
@json_option
def diagnose(hosts, inventory, state_dir, as_json):
    """Say why each Ray node is or is not in the cluster: the likely cause and the fix, per node.

    Each node's host is asked for its own evidence (its Ray container and last log lines, raylet
    and its errors, the Ray and Python versions, whether the head's GCS port answers from there,
    the address it advertises), and the head for its node table. Exit status 1 when a node is out
    (or in, but running another Ray version than the head).

    \b
    Examples:
      raydeploy diagnose
      raydeploy diagnose worker-2 --json
    """
    from raydeploy.diagnose import diagnose as diagnose_nodes
    from validate.inventory import InventoryError, load

    try:
        findings = diagnose_nodes(load(inventory, runner.state_dir_for(inventory, state_dir)), list(hosts))
    except InventoryError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="HOST") from None
    if as_json:
        click.echo(json.dumps([finding.as_dict() for finding in findings], indent=2))
    else:
        click.echo("\n".join(finding.as_text() for finding in findings))
    sys.exit(0 if all(finding.ok for finding in findings) else 1)


@click.command()
@inventory_option
@click.option("--purge-data", is_flag=True, help="Also remove the Redis, Prometheus and Grafana data volumes.")
@click.option(
    "--forget-secrets", is_flag=True, help="After a successful destroy, remove this cluster's secrets on this machine."
)
@approval_options("the destroy")
def destroy(inventory, state_dir, purge_data, forget_secrets, auto_approve, separation_of_duties):
    """Tear the cluster down: raydeploy's containers and files on every host (found on the hosts),
    with --purge-data its data volumes too. Docker, and containers raydeploy did not make, stay.

    Destructive: at a terminal the plan is shown and you type the cluster's name to approve it;
    without one it stops (exit 3) and prints the approve command. A host that cannot be reached is
    named, the others are torn down, and it exits 1 with the command that finishes the job.

    \b
    Examples:
      raydeploy destroy -i inventories/prod.py
      raydeploy destroy --purge-data --forget-secrets
    """
    from raydeploy.destroy import destroy_data, destroy_options, run_destroy
    from validate.inventory import InventoryError

    store = open_store(inventory, state_dir)
    options = destroy_options(
        inventory,
        store,
        who_am_i(),
        " ".join(["raydeploy", *sys.argv[1:]]),
        destroy_data(purge_data, forget_secrets),
        auto_approve=auto_approve,
        interactive=runner.interactive(),
        separation_of_duties=separation_of_duties,
    )
    try:
        run_id = run_destroy(options)
    except (LockHeld, InventoryError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"run {run_id} succeeded: the cluster is destroyed (raydeploy deploy brings it back)")


@click.group()
def secrets():
    """Show a secret raydeploy generated for the cluster to someone allowed to have it (audited)."""


@secrets.command("show")
@click.argument("name", type=click.Choice(SHOWABLE))
@inventory_option
@click.option("--force", is_flag=True, help="Print it even when stdout is not a terminal (a pipe, a file).")
def show_secret(name, inventory, state_dir, force):
    """Print secret NAME (the Ray dashboard asks for ray-auth-token); audited.

    Refuses when stdout is not a terminal, so the secret does not land in a file or a log by accident,
    unless --force says so.

    \b
    Example:
      raydeploy secrets show ray-auth-token
    """
    to_terminal = sys.stdout.isatty()
    if not to_terminal and not force:
        raise click.UsageError(
            "stdout is not a terminal: refusing to print a secret into a pipe or a file (add --force if you mean it)"
        )
    store = open_store(inventory, state_dir)
    try:
        value = reveal(inventory, store, name, who_am_i(), "cli" if to_terminal else "cli --force (not a terminal)")
    except SecretUnavailable as error:
        raise click.ClickException(str(error)) from None
    click.echo(value)


COMMANDS = (
    secrets,
    deploy,
    destroy,
    checkpoint,
    remove_node,
    rollback,
    list_checkpoints,
    plan,
    approve,
    reject,
    revoke,
    approvals,
    status,
    history,
    logs,
    audit,
    diagnose,
    reset,
    unlock,
)
