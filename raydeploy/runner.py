"""A deploy run: checkpoints in order, each approved (when it must be) for the plan it will execute.

The steps, each a function below: take the lock (`begin`), and for each checkpoint: plan it when
it needs an approval or was interrupted (`plan_for`), find or ask for the approval (`approve`),
run it, binding the approved plan's digest so that a different plan runs nothing (`run`), validate
it (`validate_cluster`, final-validation only), and record the outcome; then `finish`. A checkpoint
that fails on some hosts lets the others finish it; the run stops before the next checkpoint and
says, from the structured results, which hosts failed, why (each reason once) and what to run next.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

import click

from deploys.recorded_specs import SpecError, cluster_of, read_spec
from raydeploy.approvals import ApprovalError, Approvals
from raydeploy.checkpoints import (
    ACTION_NAMES,
    NAMES,
    Checkpoint,
    get,
    needs_approval,
    needs_risk_acknowledgement,
    risky,
)
from raydeploy.host_records import hosts_after, inventory_hosts, inventory_notices
from raydeploy.plans import Execution, Plan, PlanError, difference, execute, fingerprint, make_plan
from raydeploy.state import Lock, StateStore

EXIT_FAILED, EXIT_AWAITING_APPROVAL = 1, 3


class RunStopped(click.ClickException):
    """The run stopped; `exit_code` says why (1 failed, 3 awaiting approval), the message says what next."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunOptions:
    inventory: str
    store: StateStore
    checkpoints: list[str]
    requested_by: str
    command: str
    auto_approve: bool = False
    interactive: bool = False
    limit: list[str] = field(default_factory=list)
    fail_percent: int | None = None
    data: dict[str, str] = field(default_factory=dict)  # host data for every host: an action's arguments
    separation_of_duties: bool = False
    # A destructive plan is approved at the terminal by typing this back (default: the checkpoint's name).
    typed_confirmation: str | None = None
    # What to run again after a day-2 action failed on some hosts (it finds on them what is left).
    rerun_command: str | None = None
    # After a failed checkpoint that followed a change: go back to the last good recorded spec by itself.
    rollback_on_failure: bool = False
    auto_approve_reason: str = "--auto-approve"
    # final-validation checks the cluster against this run's recorded spec instead of the inventory's
    # (after a rollback, which leaves the inventory as it is).
    validate_against: str | None = None
    echo: Callable[[str], None] = click.echo
    # The pyinfra session's two calls (raydeploy.plans). The runner's own rules (the lock, approvals
    # bound to a plan's digest, the record) are pure logic; its unit tests give recorded plans here.
    plan_with: Callable[..., Plan] = make_plan
    execute_with: Callable[..., Execution] = execute


@dataclass
class Run:
    """One run in progress: its id, its lock, its log, and the checkpoint an interrupted run left."""

    id: str
    lock: Lock
    log_file: TextIO
    approvals: Approvals
    interrupted_in: str | None = None
    interrupted_run: str | None = None


@dataclass
class Outcome:
    """What a checkpoint (or the whole run) came to."""

    status: str  # succeeded | failed | awaiting-approval | rejected | interrupted
    checkpoint: str | None = None
    message: str = ""
    failed_hosts: list[str] = field(default_factory=list)
    changed: int = 0

    @property
    def exit_code(self) -> int:
        return EXIT_AWAITING_APPROVAL if self.status == "awaiting-approval" else EXIT_FAILED


def select(start_from: str | None = None, only: list[str] | None = None) -> list[str]:
    """The checkpoints a deploy runs, in order."""
    if only:
        return [name for name in NAMES if name in set(only)]
    if start_from:
        return list(NAMES[NAMES.index(get(start_from).name) :])
    return list(NAMES)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def resume_command(options: RunOptions, checkpoint: str, hosts: list[str]) -> str:
    if options.rerun_command:
        return options.rerun_command
    return f"raydeploy deploy -i {options.inventory} --start-from {checkpoint}" + "".join(
        f" --limit {host}" for host in hosts
    )


def approve_command(options: RunOptions, checkpoint: Checkpoint, plan: Plan | None = None) -> str:
    command = f"raydeploy approve {checkpoint.name} -i {options.inventory} --by YOUR_NAME --reason WHY"
    command += "".join(f" --with {shlex.quote(f'{key}={value}')}" for key, value in sorted(options.data.items()))
    return command + (" --acknowledge-risks" if needs_risk_acknowledgement(checkpoint, plan) else "")


def deploy(options: RunOptions, lock: Lock | None = None) -> str:
    """Run OPTIONS.checkpoints; return the run id, or raise RunStopped.

    LOCK, when given, was taken by the caller for its run id (the API answers 409 before it starts
    a run in the background); it is released here either way.
    """
    run = begin(options, lock)
    outcome = Outcome("failed", message="the run ended unexpectedly")
    try:
        outcome = run_checkpoints(options, run)
    except KeyboardInterrupt:
        outcome = Outcome("interrupted", message="interrupted by the operator")
        raise
    except Exception as problem:  # recorded as a failure, never as a success, then raised as it came
        outcome = Outcome("failed", message=f"{type(problem).__name__}: {problem}")
        raise
    finally:
        finish(options, run, outcome)
    if outcome.status != "succeeded":
        raise RunStopped(outcome.message, outcome.exit_code)
    return run.id


def begin(options: RunOptions, lock: Lock | None) -> Run:
    """Take the lock, note what an interrupted run left, record and announce the run."""
    store, who = options.store, options.requested_by
    lock = lock or store.acquire(new_run_id(), who)
    previous = store.last_run()
    interrupted_in = None
    if previous and previous["status"] == "interrupted":
        interrupted_in = next(
            (cp["checkpoint"] for cp in store.checkpoint_runs(previous["id"]) if cp["status"] == "interrupted"), None
        )
    try:
        store.start_run(
            lock.run_id, who, options.command, options.inventory, fingerprint(options.inventory), options.checkpoints
        )
    except PlanError as problem:  # the inventory cannot be read: nothing started
        store.release(lock)
        raise RunStopped(str(problem)) from None
    store.audit.append(
        who,
        "run started",
        lock.run_id,
        command=options.command,
        checkpoints=options.checkpoints,
        auto_approve=options.auto_approve,
        limit=options.limit,
    )
    log_path = store.log_path(lock.run_id)
    log_file = log_path.open("a")
    log_path.chmod(0o600)
    options.echo(f"run {lock.run_id}: {', '.join(options.checkpoints)} (log: {log_path})")
    approvals = Approvals(store, options.separation_of_duties)
    return Run(lock.run_id, lock, log_file, approvals, interrupted_in, previous["id"] if previous else None)


def run_checkpoints(options: RunOptions, run: Run) -> Outcome:
    """Each checkpoint in order, until one does not succeed (then, if asked, roll back); a run that
    converged the cluster records its spec."""
    changed = 0
    for name in options.checkpoints:
        outcome = checkpoint_step(options, run, get(name))
        if name == "rollback" and outcome.status == "succeeded":
            outcome = validate_rollback(options, run, outcome)
        changed += outcome.changed
        if outcome.status == "failed" and options.rollback_on_failure and changed:
            return rolled_back(options, run, outcome)
        if outcome.status != "succeeded":
            return outcome
    record_spec(options, run)
    return Outcome("succeeded")


def validate_rollback(options: RunOptions, run: Run, rolled: Outcome) -> Outcome:
    """final-validation of the cluster a rollback made, against the spec it went back to."""
    target = options.data["rollback_to"]
    say(options, run, f"validating the rolled-back cluster against run {target}'s spec (not the inventory's)")
    checked = checkpoint_step(replace(options, data={}, validate_against=target), run, get("final-validation"))
    return replace(checked, changed=rolled.changed + checked.changed)


def record_spec(options: RunOptions, run: Run) -> None:
    """Record what a successful run converged to (raydeploy/converged.py), for `raydeploy rollback`."""
    from raydeploy.converged import record_converged

    if options.limit:  # the hosts left out may not be at the inventory's spec: not a spec to go back to
        say(options, run, f"no spec recorded: the run was limited to {', '.join(options.limit)}")
        return
    try:
        digest = record_converged(
            options.inventory, str(options.store.directory), run.id, options.checkpoints, options.data
        )
    except (SpecError, OSError) as problem:
        say(options, run, f"the converged spec was not recorded ({problem}); rollback cannot go back to this run")
        return
    if digest:
        say(options, run, f"recorded spec {digest} (raydeploy rollback can go back to run {run.id})")


def rolled_back(options: RunOptions, run: Run, failure: Outcome) -> Outcome:
    """--rollback-on-failure: FAILURE followed a change, so go back to the last good spec by itself
    (approved by the flag, audited as such), validate, and report the run as failed and rolled back."""
    target = rollback_target_after(options, run, failure)
    if target is None:
        return failure
    who = options.requested_by
    say(options, run, f"{failure.checkpoint} failed after changes: rolling back to run {target}'s spec")
    options.store.audit.append(who, "rollback started", target, run_id=run.id, why=failure.message[:2000])
    back = replace(
        options,
        data={"rollback_to": target},
        auto_approve=True,
        separation_of_duties=False,
        auto_approve_reason=f"--rollback-on-failure ({failure.checkpoint} failed)",
    )
    outcome = checkpoint_step(back, run, get("rollback"))
    if outcome.status == "succeeded":
        outcome = validate_rollback(back, run, outcome)
    ended = "validated" if outcome.status == "succeeded" else f"but then {outcome.checkpoint} {outcome.status}"
    options.store.audit.append(who, "run rolled back", target, run_id=run.id, result=outcome.status)
    message = f"{failure.message}\nrolled back to run {target}'s spec ({ended})" + (
        "" if outcome.status == "succeeded" else f":\n{outcome.message}"
    )
    return Outcome("failed", failure.checkpoint, message, failure.failed_hosts, failure.changed + outcome.changed)


def rollback_target_after(options: RunOptions, run: Run, failure: Outcome) -> str | None:
    """The run whose spec --rollback-on-failure goes back to: the last good one (the newest recorded),
    unless it is what this run was deploying, as going back would then change nothing. When there is
    none, FAILURE's message says why it was not rolled back."""
    from raydeploy.converged import inventory_spec, last_good

    try:
        good = last_good(str(options.store.directory))
        attempted = inventory_spec(options.inventory, str(options.store.directory))["digest"]
    except SpecError as problem:
        good, why = None, f"the last good spec cannot be read: {problem}"
    else:
        why = "no run has recorded a good spec yet"
    if good is not None and good[1] != attempted:
        return good[0]
    if good is not None:
        why = (
            f"the last good spec, run {good[0]}'s, is the one this run was deploying, so going back would change "
            "nothing; fix the cause above and run the same command again"
        )
    say(options, run, f"--rollback-on-failure: not rolled back: {why}")
    failure.message += f"\n(not rolled back: {why})"
    return None


def checkpoint_step(options: RunOptions, run: Run, checkpoint: Checkpoint) -> Outcome:
    """Plan, approve, run and record CHECKPOINT; its outcome."""
    store, who = options.store, options.requested_by
    store.start_checkpoint(run.id, checkpoint.name)
    try:
        plan = plan_for(options, run, checkpoint)
    except PlanError as problem:
        return record(options, run, checkpoint, Outcome("failed", checkpoint.name, str(problem)))
    store.start_checkpoint(run.id, checkpoint.name, plan.digest if plan else None)
    store.audit.append(who, "checkpoint started", checkpoint.name, run_id=run.id, plan_digest=plan and plan.digest)
    if plan is not None and plan.failed:
        return record(options, run, checkpoint, failed(options, checkpoint, planning_failure(plan)))
    try:
        refusal = approve(options, run, checkpoint, plan) if needs_approval(checkpoint, plan) else None
    except ApprovalError as problem:
        refusal = Outcome("failed", checkpoint.name, str(problem))
    if refusal is not None:
        return record(options, run, checkpoint, refusal)
    return record(options, run, checkpoint, run_step(options, run, checkpoint, plan))


def plan_for(options: RunOptions, run: Run, checkpoint: Checkpoint) -> Plan | None:
    """CHECKPOINT's plan when it needs an approval or was left interrupted; otherwise None."""
    interrupted = checkpoint.name == run.interrupted_in
    if not (checkpoint.approval_required or checkpoint.may_disrupt or interrupted):
        return None
    if interrupted:
        say(
            options,
            run,
            f"{checkpoint.name} was in progress when run {run.interrupted_run} was interrupted: planning it again",
        )
    plan = options.plan_with(options.inventory, checkpoint, options.store.directory, options.limit, options.data)
    write_log(options, run, plan.describe(commands=True))
    return plan


def planning_failure(plan: Plan) -> Execution:
    return Execution(False, 0, [], sorted(plan.failed), dict(plan.failed), plan.document.get("error", ""))


def run_step(options: RunOptions, run: Run, checkpoint: Checkpoint, plan: Plan | None) -> Outcome:
    """Run CHECKPOINT (bound to PLAN when it was approved), then validate final-validation's cluster."""
    say(options, run, f"{checkpoint.name}: running")
    started = time.monotonic()
    bound = plan if needs_approval(checkpoint, plan) else None
    execution = options.execute_with(
        options.inventory,
        checkpoint,
        lambda line: write_log(options, run, line),
        options.limit,
        options.fail_percent,
        options.store.directory,
        approved=bound,
        data=options.data,
    )
    if execution.refused is not None:
        return plan_changed(options, checkpoint, bound, execution.refused)
    options.store.record_operations(run.id, checkpoint.name, execution.rows)
    if execution.ok and checkpoint.name == "final-validation":
        execution = validate_cluster(options, run, execution)
    say(options, run, host_table(execution.rows))
    if not execution.ok:
        record_hosts(options, run, checkpoint, execution)  # a destroy's finished hosts are torn down all the same
        return failed(options, checkpoint, with_diagnosis(options, execution))
    say(options, run, f"{checkpoint.name}: done, {execution.changed} change(s) in {time.monotonic() - started:.1f} s")
    record_hosts(options, run, checkpoint, execution)
    report_drains(options, run, execution)
    return Outcome("succeeded", checkpoint.name, changed=execution.changed)


def record_hosts(options: RunOptions, run: Run, checkpoint: Checkpoint, execution: Execution) -> None:
    """Remember the hosts a ray-deployment deployed, a remove-node removed and a destroy tore down (status and
    plan read them)."""
    found = hosts_after(
        checkpoint.name, run_hosts(options, checkpoint, execution), options.data, execution.failed_hosts
    )
    if not found or not found[0]:
        return
    names, status = found
    options.store.record_hosts(names, status, run.id)
    options.store.audit.append(options.requested_by, f"hosts {status}", ", ".join(names), run_id=run.id)


def run_hosts(options: RunOptions, checkpoint: Checkpoint, execution: Execution) -> list[str]:
    """The hosts CHECKPOINT ran on: a destroy runs on the whole inventory (a host already clean has no
    operation to show for it); the others, the hosts with operations."""
    if checkpoint.name == "destroy" and not options.limit:
        try:
            return sorted(inventory_hosts(options.inventory))
        except PlanError:
            pass
    return sorted({row[0] for row in execution.rows} | set(execution.failed_hosts))


def report_drains(options: RunOptions, run: Run, execution: Execution) -> None:
    """Say, and audit, what a remove-node's drains reported: drained, or timed out and cut off (approved)."""
    from raydeploy.node_actions import drain_reports

    for host, drained in sorted(drain_reports(execution.rows).items()):
        if drained["drained"]:
            say(options, run, f"{host}: Ray node {drained['node']} drained, no task or actor ran there at removal")
            continue
        work = "; ".join(drained["cut_off"])
        say(options, run, f"{host}: drain timed out; removed anyway (the approval allowed it), cut off: {work}")
        options.store.audit.append(
            options.requested_by, "drain cut off work", host, run_id=run.id, cut_off=drained["cut_off"]
        )


def with_diagnosis(options: RunOptions, execution: Execution) -> Execution:
    """When the head's wait for every Ray node gave up, each node's own finding (raydeploy/diagnose.py)."""
    from deploys.ray_cluster import JOIN_WAIT

    if not any(result == "failed" and operation.endswith(JOIN_WAIT) for _, operation, result, _ in execution.rows):
        return execution
    from raydeploy.diagnose import diagnose
    from validate.inventory import InventoryError, load

    options.echo("ray-deployment: asking each Ray node why it is not in the cluster (raydeploy diagnose)")
    try:
        findings = diagnose(load(options.inventory, str(options.store.directory)))
    except InventoryError:
        return execution
    out = [finding.as_text() for finding in findings if not finding.ok]
    if not out:
        return execution
    why = "why, per node (raydeploy diagnose):\n" + "\n".join(out)
    return replace(execution, error="\n".join(filter(None, [execution.error, why])))


def plan_changed(options: RunOptions, checkpoint: Checkpoint, approved: Plan, found: Plan) -> Outcome:
    """The plan was no longer the approved one when it was about to run: nothing ran."""
    changes = difference(approved.document, found.document)
    lines = "\n".join(f"  {line}" for line in changes) or "  (the same operations, other inputs)"
    return Outcome(
        "awaiting-approval",
        checkpoint.name,
        f"{checkpoint.name}: the plan changed after it was approved (approved {approved.digest}, now {found.digest}); "
        f"nothing was run. What changed, per host:\n{lines}\n"
        f"See the plan: raydeploy plan {checkpoint.name} -i {options.inventory}; "
        f"approve it: {approve_command(options, checkpoint, found)}; then run again.",
    )


def failed(options: RunOptions, checkpoint: Checkpoint, execution: Execution) -> Outcome:
    """A failed checkpoint, told to the operator: which hosts, why (once each), and what to run next."""
    hosts = execution.failed_hosts
    where = f" on {', '.join(hosts)}" if hosts else ""
    lines = [f"{checkpoint.name} failed{where}"]
    lines += [f"  {line}" for line in execution.summary.splitlines()]
    if checkpoint.name in ACTION_NAMES:  # no deploy --start-from, and no next checkpoint, for an action
        lines.append(action_next_step(options, checkpoint, execution))
    elif checkpoint.name == "prerequisites-check":
        lines.append("nothing was changed on any host; fix what is named above, then run it again.")
        lines.append(f"resume: {resume_command(options, checkpoint.name, [])}")
    else:
        lines.append(next_step(options, checkpoint, execution))
    return Outcome("failed", checkpoint.name, "\n".join(lines), hosts, execution.changed)


def action_next_step(options: RunOptions, action: Checkpoint, execution: Execution) -> str:
    """What the operator runs next after the day-2 ACTION failed on some hosts: the same command again
    (a re-run finds on each host what is left to do)."""
    succeeded = sorted({row[0] for row in execution.rows} - set(execution.failed_hosts))
    others = f"the other hosts ({', '.join(succeeded)}) finished it; " if succeeded else ""
    again = options.rerun_command or options.command
    return f"{others}fix what is named above, then run the same {action.name} again to finish it.\nresume: {again}"


def next_step(options: RunOptions, checkpoint: Checkpoint, execution: Execution) -> str:
    """What the operator runs next after CHECKPOINT failed on some hosts."""
    succeeded = sorted({row[0] for row in execution.rows} - set(execution.failed_hosts))
    others = f"the other hosts ({', '.join(succeeded)}) finished it; " if succeeded else ""
    return (
        f"{others}the run stopped before the next checkpoint; fix what is named above, then resume.\n"
        f"resume: {resume_command(options, checkpoint.name, execution.failed_hosts)}"
    )


def record(options: RunOptions, run: Run, checkpoint: Checkpoint, outcome: Outcome) -> Outcome:
    """Write CHECKPOINT's OUTCOME to the state and the audit trail."""
    store, who = options.store, options.requested_by
    store.finish_checkpoint(
        run.id, checkpoint.name, outcome.status, outcome.changed, outcome.failed_hosts, outcome.message or None
    )
    if outcome.status == "succeeded":
        store.audit.append(who, "checkpoint finished", checkpoint.name, run_id=run.id, changed=outcome.changed)
    elif outcome.status == "failed":
        store.audit.append(
            who,
            "checkpoint failed",
            checkpoint.name,
            run_id=run.id,
            hosts=outcome.failed_hosts,
            error=outcome.message[:2000],
        )
    return outcome


def finish(options: RunOptions, run: Run, outcome: Outcome) -> None:
    """Record how the run ended, audit it, close its log and give the lock back."""
    store = options.store
    try:
        store.finish_run(run.id, outcome.status, outcome.checkpoint, outcome.failed_hosts, outcome.message or None)
        event = "run interrupted" if outcome.status == "interrupted" else "run finished"
        store.audit.append(
            options.requested_by, event, run.id, status=outcome.status, failed_checkpoint=outcome.checkpoint
        )
    finally:
        run.log_file.close()
        store.release(run.lock)


def say(options: RunOptions, run: Run, text: str) -> None:
    """What the runner tells the operator during RUN: echoed, and in the run's log (which the API's
    followers read)."""
    run.log_file.write(text + "\n")
    run.log_file.flush()
    options.echo(text)


def write_log(options: RunOptions, run: Run, line: str) -> None:
    """A line for the run's log; the ones an operator follows are echoed too."""
    run.log_file.write(line + "\n")
    run.log_file.flush()
    # Progress only: what failed is told once, at the end, from the structured results.
    if line.startswith("-->") or " will " in line or "waiting" in line:
        options.echo(f"  {line.strip()}")


def approve(options: RunOptions, run: Run, checkpoint: Checkpoint, plan: Plan) -> Outcome | None:
    """Find or obtain the approval PLAN needs and use it: None when approved, else why not."""
    if not plan.has_changes:
        say(options, run, f"{checkpoint.name}: the plan changes nothing, no approval needed")
        return None
    who = options.requested_by
    decision = run.approvals.find(plan, requested_by=who)
    if decision.approval is not None:
        run.approvals.use(decision.approval, run.id, who)
        say(
            options,
            run,
            f"{checkpoint.name}: approved by {decision.approval['approved_by']} ({decision.approval['reason']})",
        )
        return None
    if decision.reason and "no valid approval" not in decision.reason:
        say(options, run, f"{checkpoint.name}: an approval exists but does not count: {decision.reason}")
    if options.auto_approve:
        return auto_approve(options, run, checkpoint, plan)
    if options.interactive:
        return prompt_approval(options, run, checkpoint, plan)
    options.store.audit.append(who, "approval requested", checkpoint.name, run_id=run.id, plan_digest=plan.digest)
    return Outcome(
        "awaiting-approval",
        checkpoint.name,
        f"{checkpoint.name} needs an approval for plan {plan.digest} and there is none"
        + (f" ({decision.reason})" if decision.reason else "")
        + f"; nothing was changed by it. See the plan: raydeploy plan {checkpoint.name} -i {options.inventory}; "
        f"approve it: {approve_command(options, checkpoint, plan)}; then run again.",
    )


def auto_approve(options: RunOptions, run: Run, checkpoint: Checkpoint, plan: Plan) -> Outcome | None:
    """--auto-approve: the requester approves, recorded as such; never a destructive (or disruptive) plan
    under separation of duties."""
    who = options.requested_by
    if needs_risk_acknowledgement(checkpoint, plan) and options.separation_of_duties:
        return Outcome(
            "awaiting-approval",
            checkpoint.name,
            f"{checkpoint.name} is {risky(checkpoint)} and separation of duties is on: --auto-approve cannot "
            f"approve it; another person runs: {approve_command(options, checkpoint, plan)}",
        )
    approval = run.approvals.grant(
        plan,
        approved_by=who,
        reason=options.auto_approve_reason,
        acknowledge_risks=True,
        source="auto-approve",
        actor=who,
    )
    run.approvals.use(approval, run.id, who)
    say(
        options,
        run,
        f"{checkpoint.name}: approved with {options.auto_approve_reason} by {who} (recorded in the audit trail)",
    )
    return None


def prompt_approval(options: RunOptions, run: Run, checkpoint: Checkpoint, plan: Plan) -> Outcome | None:
    """Show the plan at the terminal; a destructive (or disruptive) one is approved only by typing its
    checkpoint's name (or OPTIONS.typed_confirmation, as destroy asks for the cluster's name)."""
    who = options.requested_by
    options.echo(plan.describe())
    if needs_risk_acknowledgement(checkpoint, plan):
        word = options.typed_confirmation or checkpoint.name
        what = "its name" if word == checkpoint.name else f"the cluster's name ({word})"
        typed = click.prompt(
            f"{checkpoint.name} is {risky(checkpoint)}. Type {what} to approve this plan (anything else refuses)",
            default="",
            show_default=False,
        )
        agreed = typed.strip() == word
    else:
        agreed = click.confirm(f"Approve this plan for {checkpoint.name}?", default=False)
    if not agreed:
        options.store.audit.append(
            who, "plan rejected", checkpoint.name, plan_digest=plan.digest, reason="refused at the prompt"
        )
        return Outcome(
            "rejected", checkpoint.name, f"{checkpoint.name}: not approved at the prompt; nothing was changed by it"
        )
    approval = run.approvals.grant(
        plan, approved_by=who, reason="approved at the prompt", acknowledge_risks=True, source="prompt", actor=who
    )
    run.approvals.use(approval, run.id, who)
    return None


def host_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Per host: operations changed, unchanged, failed."""
    counts: dict[str, dict[str, int]] = {}
    for host, _operation, result, _output in rows:
        bucket = counts.setdefault(host, {"changed": 0, "unchanged": 0, "failed": 0})
        bucket[result] = bucket.get(result, 0) + 1
    if not counts:
        return "  (no operations: this checkpoint only checks)"
    lines = [f"  {'HOST':<16} {'CHANGED':>8} {'UNCHANGED':>10} {'FAILED':>7}"]
    for host in sorted(counts):
        row = counts[host]
        lines.append(f"  {host:<16} {row['changed']:>8} {row['unchanged']:>10} {row['failed']:>7}")
    return "\n".join(lines)


def validate_cluster(options: RunOptions, run: Run, execution: Execution) -> Execution:
    """final-validation also runs the validate package's checks and smoke job; recorded as validation results."""
    from validate.inventory import InventoryError, load
    from validate.results import FAIL, UNREACHABLE
    from validate.runner import run as run_validation

    try:
        loaded = load(options.inventory, str(options.store.directory))
        if options.validate_against:  # the cluster a rollback went back to, this host's secrets as they are
            spec = read_spec(options.store.directory, options.validate_against)
            loaded = replace(loaded, cluster=cluster_of(spec, local=loaded.cluster))
        report = run_validation(loaded, scope="final-validation")
    except (InventoryError, SpecError) as problem:
        return Execution(False, execution.changed, execution.rows, [], error=str(problem))
    write_log(options, run, report.as_text())
    options.store.record_validation(
        run.id, "final-validation", [(r.host, r.check, r.status, r.detail) for r in report.results]
    )
    bad = [r for r in report.results if r.status in (FAIL, UNREACHABLE)]
    if not bad:
        return execution
    reasons: dict[str, list[str]] = {}
    for result in bad:
        reasons.setdefault(result.host, []).append(f"{result.check}: {result.detail}")
    return Execution(
        False,
        execution.changed,
        execution.rows,
        sorted(reasons),
        {host: "; ".join(found) for host, found in reasons.items()},
    )


def status_report(store: StateStore, inventory: str) -> dict:
    """The last run, each checkpoint's last result, what failed and how to resume."""
    run = store.last_run()
    checkpoints = []
    for checkpoint in NAMES:
        last = store.last_result(checkpoint)
        checkpoints.append(
            {
                "checkpoint": checkpoint,
                "status": last["status"] if last else "never run",
                "at": last["finished_at"] if last else None,
            }
        )
    answer: dict = {"state_dir": str(store.directory), "last_run": run, "checkpoints": checkpoints}
    lock = store.current_lock()
    answer["lock"] = lock.__dict__ if lock else None
    stopped_in = run and run["failed_checkpoint"]
    if stopped_in in ACTION_NAMES:
        answer["resume"] = run["command"]
    elif run and run["status"] in ("failed", "awaiting-approval", "interrupted") and stopped_in:
        hosts = json.loads(run["failed_hosts"] or "[]")
        command = f"raydeploy deploy -i {inventory} --start-from {run['failed_checkpoint']}"
        answer["resume"] = command + "".join(f" --limit {host}" for host in hosts)
    elif run and run["status"] == "interrupted":
        answer["resume"] = f"raydeploy deploy -i {inventory}"
    answer["hosts"] = inventory_notices(inventory, store.hosts())
    answer["nodes"] = inventory_nodes(inventory)
    return answer


def inventory_nodes(inventory: str) -> list[dict]:
    """Each Ray node's group and what it offers Ray (raydeploy/node_groups.py); [] for an unreadable inventory,
    which the rest of the status already reports."""
    from raydeploy.node_groups import node_groups
    from validate.inventory import InventoryError, load

    try:
        return node_groups(load(inventory).cluster)
    except InventoryError:
        return []


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def state_dir_for(inventory: str, state_dir: str | None) -> Path:
    from raydeploy.state import default_state_dir

    return Path(state_dir) if state_dir else default_state_dir(inventory)
