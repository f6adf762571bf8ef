"""A deploy run: checkpoints in order, each approved (when it must be) for the plan it will execute.

One run at a time per state directory (the lock). Each checkpoint that needs approval is planned
again just before it runs, and runs only with an approval bound to that very plan (or one the
operator gives at the prompt, or --auto-approve, each recorded as such). A checkpoint that fails
on some hosts lets the others finish it, then the run stops before the next checkpoint and says
how to resume. Everything pyinfra prints goes to the run's log; every step goes to the audit trail.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from raydeploy.approvals import ApprovalError, Approvals
from raydeploy.checkpoints import NAMES, Checkpoint, get
from raydeploy.plans import ERROR_WORD, Plan, PlanError, execute, fingerprint, make_plan
from raydeploy.state import Lock, StateStore

EXIT_FAILED, EXIT_AWAITING_APPROVAL = 1, 3


class RunStopped(Exception):
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
    separation_of_duties: bool = False
    echo: Callable[[str], None] = click.echo


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
    command = f"raydeploy deploy -i {options.inventory} --start-from {checkpoint}"
    if hosts:
        command += "".join(f" --limit {host}" for host in hosts)
    return command


def approve_command(options: RunOptions, checkpoint: Checkpoint) -> str:
    command = f"raydeploy approve {checkpoint.name} -i {options.inventory} --by YOUR_NAME --reason WHY"
    return command + (" --acknowledge-risks" if checkpoint.destructive else "")


def _prompt(options: RunOptions, checkpoint: Checkpoint, plan: Plan) -> bool:
    options.echo(plan.describe())
    if checkpoint.destructive:
        typed = click.prompt(
            f"{checkpoint.name} is destructive. Type its name to approve this plan (anything else refuses)",
            default="",
            show_default=False,
        )
        return typed.strip() == checkpoint.name
    return click.confirm(f"Approve this plan for {checkpoint.name}?", default=False)


def _approve(options: RunOptions, approvals: Approvals, checkpoint: Checkpoint, plan: Plan, run_id: str) -> None:
    """Find or obtain the approval for PLAN and use it; raise RunStopped (exit 3) when there is none."""
    store, who = options.store, options.requested_by
    decision = approvals.find(plan, requested_by=who)
    if decision.approval is not None:
        approvals.use(decision.approval, run_id, who)
        options.echo(
            f"{checkpoint.name}: approved by {decision.approval['approved_by']} ({decision.approval['reason']})"
        )
        return
    if decision.reason and "no valid approval" not in decision.reason:
        options.echo(f"{checkpoint.name}: an approval exists but does not count: {decision.reason}")
    if options.auto_approve:
        if checkpoint.destructive and options.separation_of_duties:
            raise RunStopped(
                f"{checkpoint.name} is destructive and separation of duties is on: --auto-approve cannot approve it; "
                f"another person runs: {approve_command(options, checkpoint)}",
                EXIT_AWAITING_APPROVAL,
            )
        approval = approvals.grant(
            plan, approved_by=who, reason="--auto-approve", acknowledge_risks=True, source="auto-approve", actor=who
        )
        approvals.use(approval, run_id, who)
        options.echo(f"{checkpoint.name}: approved with --auto-approve by {who} (recorded in the audit trail)")
        return
    if options.interactive:
        if _prompt(options, checkpoint, plan):
            approval = approvals.grant(
                plan,
                approved_by=who,
                reason="approved at the prompt",
                acknowledge_risks=True,
                source="prompt",
                actor=who,
            )
            approvals.use(approval, run_id, who)
            return
        store.audit.append(
            who, "plan rejected", checkpoint.name, plan_digest=plan.digest, reason="refused at the prompt"
        )
        raise RunStopped(f"{checkpoint.name}: not approved at the prompt; nothing was changed by it")
    store.audit.append(who, "approval requested", checkpoint.name, run_id=run_id, plan_digest=plan.digest)
    raise RunStopped(
        f"{checkpoint.name} needs an approval for plan {plan.digest} and there is none"
        + (f" ({decision.reason})" if decision.reason else "")
        + f"; nothing was changed by it. See the plan: raydeploy plan {checkpoint.name} -i {options.inventory}; "
        f"approve it: {approve_command(options, checkpoint)}; then run again.",
        EXIT_AWAITING_APPROVAL,
    )


def deploy(options: RunOptions, lock: Lock | None = None) -> str:
    """Run OPTIONS.checkpoints; return the run id, or raise RunStopped.

    LOCK, when given, was taken by the caller for its run id (the API answers 409 before it starts
    a run in the background); it is released here either way.
    """
    store, who = options.store, options.requested_by
    run_id = lock.run_id if lock else new_run_id()
    lock = lock or store.acquire(run_id, who)
    previous = store.last_run()
    interrupted_in = None
    if previous and previous["status"] == "interrupted":
        interrupted_in = next(
            (cp["checkpoint"] for cp in store.checkpoint_runs(previous["id"]) if cp["status"] == "interrupted"), None
        )
    log_path = store.log_path(run_id)
    approvals = Approvals(store, options.separation_of_duties)
    status, failed_checkpoint, failed_hosts, error = "succeeded", None, [], None
    try:
        store.start_run(
            run_id, who, options.command, options.inventory, fingerprint(options.inventory), options.checkpoints
        )
        store.audit.append(
            who,
            "run started",
            run_id,
            command=options.command,
            checkpoints=options.checkpoints,
            auto_approve=options.auto_approve,
            limit=options.limit,
        )
        options.echo(f"run {run_id}: {', '.join(options.checkpoints)} (log: {log_path})")
        with log_path.open("a") as log_file:
            log_path.chmod(0o600)

            def log(line: str) -> None:
                log_file.write(line + "\n")
                log_file.flush()
                if line.startswith("-->") or ERROR_WORD.search(line) or " will " in line or "waiting" in line:
                    options.echo(f"  {line.strip()}")

            for name in options.checkpoints:
                checkpoint = get(name)
                plan = None
                if checkpoint.approval_required or name == interrupted_in:
                    if name == interrupted_in:
                        options.echo(
                            f"{name} was in progress when run {previous['id']} was interrupted: planning it again"
                        )
                    plan = make_plan(options.inventory, checkpoint, options.limit)
                    log(plan.describe())
                store.start_checkpoint(run_id, name, plan.digest if plan else None)
                store.audit.append(
                    who, "checkpoint started", name, run_id=run_id, plan_digest=plan.digest if plan else None
                )
                if checkpoint.approval_required and plan is not None and plan.has_changes:
                    try:
                        _approve(options, approvals, checkpoint, plan, run_id)
                    except RunStopped as stopped:
                        state = "awaiting-approval" if stopped.exit_code == EXIT_AWAITING_APPROVAL else "rejected"
                        store.finish_checkpoint(run_id, name, state, error=str(stopped))
                        status, failed_checkpoint, error = state, name, str(stopped)
                        raise
                elif checkpoint.approval_required and plan is not None:
                    options.echo(f"{name}: the plan changes nothing, no approval needed")
                options.echo(f"{name}: running")
                started = time.monotonic()
                execution = execute(options.inventory, checkpoint, log, options.limit, options.fail_percent)
                store.record_operations(run_id, name, execution.rows)
                if execution.ok and name == "final-validation":
                    execution = _validate(options, run_id, execution, log)
                if not execution.ok:
                    options.echo(host_table(execution.rows))
                    store.finish_checkpoint(
                        run_id, name, "failed", execution.changed, execution.failed_hosts, execution.error
                    )
                    store.audit.append(
                        who,
                        "checkpoint failed",
                        name,
                        run_id=run_id,
                        hosts=execution.failed_hosts,
                        error=execution.error[:2000],
                    )
                    status, failed_checkpoint, failed_hosts, error = (
                        "failed",
                        name,
                        execution.failed_hosts,
                        execution.error,
                    )
                    raise RunStopped(
                        f"{name} failed"
                        + (f" on {', '.join(execution.failed_hosts)}" if execution.failed_hosts else "")
                        + f": {execution.error}\nthe other hosts finished {name}; the run stopped before the next checkpoint."
                        f"\nresume: {resume_command(options, name, execution.failed_hosts)}"
                    )
                options.echo(host_table(execution.rows))
                store.finish_checkpoint(run_id, name, "succeeded", execution.changed)
                store.audit.append(who, "checkpoint finished", name, run_id=run_id, changed=execution.changed)
                options.echo(f"{name}: done, {execution.changed} change(s) in {time.monotonic() - started:.1f} s")
    except (PlanError, ApprovalError) as problem:
        status, error = "failed", str(problem)
        raise RunStopped(str(problem)) from None
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted by the operator"
        raise
    except RunStopped:
        raise
    except Exception as problem:  # recorded as a failure, never as a success, then raised as it came
        status, error = "failed", f"{type(problem).__name__}: {problem}"
        raise
    finally:
        store.finish_run(run_id, status, failed_checkpoint, failed_hosts, error)
        event = {"succeeded": "run finished", "interrupted": "run interrupted"}.get(status, "run finished")
        store.audit.append(who, event, run_id, status=status, failed_checkpoint=failed_checkpoint)
        store.release(lock)
    return run_id


def host_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Per host: operations changed, unchanged, failed."""
    counts: dict[str, dict[str, int]] = {}
    for host, _operation, result, _stderr in rows:
        bucket = counts.setdefault(host, {"changed": 0, "unchanged": 0, "failed": 0})
        key = {"pass": "unchanged", "not-deployed": "unchanged", "unreachable": "failed", "fail": "failed"}.get(
            result, result
        )
        bucket[key] = bucket.get(key, 0) + 1
    if not counts:
        return "  (no operations: this checkpoint only checks)"
    lines = [f"  {'HOST':<16} {'CHANGED':>8} {'UNCHANGED':>10} {'FAILED':>7}"]
    for host in sorted(counts):
        row = counts[host]
        lines.append(f"  {host:<16} {row['changed']:>8} {row['unchanged']:>10} {row['failed']:>7}")
    return "\n".join(lines)


def _validate(options: RunOptions, run_id: str, execution, log: Callable[[str], None]):
    """final-validation also runs the validate package's checks and smoke job; their results join the run's."""
    from validate.inventory import InventoryError, load
    from validate.results import FAIL, UNREACHABLE
    from validate.runner import run as run_validation

    try:
        report = run_validation(load(options.inventory), scope="final-validation")
    except InventoryError as problem:
        execution.ok, execution.error = False, str(problem)
        return execution
    log(report.as_text())
    rows = [(r.host, f"validate: {r.check}", r.status, r.detail if r.status != "pass" else "") for r in report.results]
    options.store.record_operations(run_id, "final-validation", rows)
    bad = [r for r in report.results if r.status in (FAIL, UNREACHABLE)]
    if bad:
        execution.ok = False
        execution.failed_hosts = sorted({r.host for r in bad})
        execution.error = "; ".join(f"{r.host}: {r.check}: {r.detail}" for r in bad)
    return execution


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
    if run and run["status"] in ("failed", "awaiting-approval", "interrupted") and run["failed_checkpoint"]:
        hosts = json.loads(run["failed_hosts"] or "[]")
        command = f"raydeploy deploy -i {inventory} --start-from {run['failed_checkpoint']}"
        answer["resume"] = command + "".join(f" --limit {host}" for host in hosts)
    elif run and run["status"] == "interrupted":
        answer["resume"] = f"raydeploy deploy -i {inventory}"
    return answer


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def state_dir_for(inventory: str, state_dir: str | None) -> Path:
    from raydeploy.state import default_state_dir

    return Path(state_dir) if state_dir else default_state_dir(inventory)
