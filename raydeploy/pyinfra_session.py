"""One deploy file through pyinfra's own API, in a child process: plan it, and run that very plan.

Run as `python -m raydeploy.pyinfra_session INVENTORY DEPLOY_FILE [options]`. It does what the
`pyinfra` command does (load the inventory, connect, prepare the operations, run them, log every
host's lines to stderr in pyinfra's words) and, between preparing and running, reads what pyinfra
knows: per host, per operation, the commands it would run and a hash of every file it would
upload. That is the plan (raydeploy/plans.py gives it its digest). With `--execute` and
`--expect-digest`, it runs only if the plan it just made has that digest, so an approval binds to
exactly what runs; with a different plan it runs nothing and says so.

Why our own child process and not the `pyinfra` CLI: the CLI's `--json` tells which operations
change, never their commands; and a plan made by one process and executed by another leaves a
window in which the hosts can change. Why a child process at all: pyinfra's state is global to a
process (the API server runs several runs in threads) and gevent patches what it runs on.

stdout: one JSON document `{"plan": ..., "results": ... | null, "refused": bool}`.
Exit codes: 0 ran (or planned) without a failed host, 1 a host failed or pyinfra stopped,
4 refused: the plan differs from `--expect-digest`, nothing ran.
"""

from __future__ import annotations

if __name__ == "__main__":  # the child process: gevent's patches first, as pyinfra's CLI does (see CHILD_ONLY)
    from gevent import monkey

    monkey.patch_all()

import argparse
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click
import pyinfra
from pyinfra import logger
from pyinfra.api import Config, State
from pyinfra.api.command import FileDownloadCommand, FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops
from pyinfra.api.output import set_echo, set_formatter
from pyinfra.api.state import StateStage
from pyinfra.api.util import get_file_sha256
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state

from raydeploy.plans import PLAN_FORMAT, digest_of

# CHILD_ONLY: importing pyinfra_cli patches the standard library for gevent (threads, sockets), which
# would hang the process that imports this module for its plan data (the API, tests); only the child
# process, which runs pyinfra, imports it, inside the functions that need it.
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 4
PR_SET_PDEATHSIG = 1  # prctl(2)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
REDACTED = "<secret>"
SUCCESS_OUTPUT, FAILURE_OUTPUT = 1000, 4000  # characters of an operation's output kept in the results


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m raydeploy.pyinfra_session")
    parser.add_argument("inventory")
    parser.add_argument("deploy_file")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--limit", action="append", default=[])
    parser.add_argument("--execute", action="store_true", help="run the operations (default: plan only)")
    parser.add_argument("--expect-digest", help="with --execute: run only a plan with this digest")
    parser.add_argument("--fail-percent", type=int)
    parser.add_argument(
        "--data", action="append", default=[], metavar="KEY=VALUE", help="host data for every host (pyinfra's --data)"
    )
    options = parser.parse_args(argv)
    options.data = dict(item.partition("=")[::2] for item in options.data)
    return options


class NoteRecorder(logging.Handler):
    """What a deploy says about a host while it is being planned (`host.log`), kept for people.

    pyinfra runs each host's deploy code with that host as `context.host`; a line it logs with the
    host's prefix is that host's note. pyinfra's own lines (ready, noop) are not notes, nor are the
    warnings of deploys/disruptions.py, which the plan carries as data.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.notes: dict[str, list[str]] = {}
        self.recording = True

    def emit(self, record: logging.LogRecord) -> None:
        if not self.recording or not ctx_host.isset():
            return
        current = ctx_host.get()
        text = ANSI.sub("", record.getMessage())
        prefix = ANSI.sub("", current.print_prefix)
        if not text.startswith(prefix):
            return
        note = text[len(prefix) :].strip()
        if note and not note.startswith(("noop:", "Ready:", "DISRUPTIVE:")):
            self.notes.setdefault(current.name, []).append(note)


def secret_values(state: Any) -> list[str]:
    """Secrets the deploys generated (deploys/credentials.py), to redact from commands people read."""
    directories = {os.environ.get("RAYDEPLOY_STATE_DIR") or ".raydeploy"}
    directories |= {str(host.data.get("state_dir")) for host in state.inventory if host.data.get("state_dir")}
    values = []
    for directory in directories:
        for path in Path(directory, "secrets").glob("*"):
            with contextlib.suppress(OSError):
                value = path.read_text().strip()
                if len(value) >= 8:
                    values.append(value)
    return values


def command_record(command: Any, secrets: list[str]) -> dict[str, str]:
    """One command as plan data: what it is, and a hash of everything it carries."""

    def sha256(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    if isinstance(command, StringCommand):
        shown = redacted(command.get_masked_value(), secrets)
        return {"type": "shell", "command": shown, "sha256": sha256(command.get_raw_value())}
    if isinstance(command, FileUploadCommand):
        if hasattr(command.src, "seek"):
            command.src.seek(0)
        return {"type": "upload", "dest": command.dest, "sha256": get_file_sha256(command.src)}
    if isinstance(command, FileDownloadCommand):
        return {"type": "download", "src": command.src, "dest": str(command.dest)}
    if isinstance(command, FunctionCommand):
        function = command.function
        name = f"{function.__module__}.{function.__qualname__}"
        return {"type": "function", "function": name, "sha256": sha256(repr((command.args, command.kwargs)))}
    return {"type": type(command).__name__, "sha256": sha256(repr(command))}


def host_operations(state: Any, host: Any, secrets: list[str]) -> list[dict[str, Any]]:
    """HOST's operations that would change something, with their commands, in pyinfra's order."""

    planned = []
    for op_hash in state.get_op_order():
        if op_hash not in state.ops[host]:
            continue
        op_data = state.get_op_data_for_host(host, op_hash)
        if not op_data.operation_meta._maybe_is_change:
            continue
        with ctx_host.use(host):
            commands = [command_record(command, secrets) for command in op_data.command_generator()]
        entry: dict[str, Any] = {"name": operation_name(state, op_hash), "commands": commands}
        if op_data.global_arguments.get("_if"):
            entry["conditional"] = True
        planned.append(entry)
    return planned


def operation_name(state: Any, op_hash: str) -> str:
    from pyinfra_cli.prints import pretty_op_name  # see CHILD_ONLY

    return ANSI.sub("", pretty_op_name(state.op_meta[op_hash]))


def plan_document(
    state: Any, checkpoint: str, notes: NoteRecorder, failure: dict[str, Any] | None, data: dict[str, str]
) -> dict:
    """The plan, per host: planned (its operations, and what of them disrupts the cluster), unreachable,
    or failed (with pyinfra's error); and the data the run was given (an action's arguments), which
    an approval binds too."""
    from deploys.disruptions import RECORDED

    notes.recording = False
    secrets = secret_values(state)
    hosts: dict[str, dict[str, Any]] = {}
    for host in state.inventory:
        if not state.is_host_in_limit(host):
            continue
        entry: dict[str, Any] = {"status": "planned", "operations": [], "notes": notes.notes.get(host.name, [])}
        if host in state.failed_hosts and not host.connected:
            entry["status"] = "unreachable"
        elif failure is not None and host.name in failure["hosts"]:
            entry |= {"status": "failed", "error": failure["hosts"][host.name]}
        elif failure is None:
            entry["operations"] = host_operations(state, host, secrets)
            if RECORDED.get(host.name) and entry["operations"]:  # absent when none: digests stay as before
                entry["disruptions"] = RECORDED[host.name]
        hosts[host.name] = entry
    document = {"format": PLAN_FORMAT, "checkpoint": checkpoint, "hosts": hosts}
    if data:
        document["data"] = dict(sorted(data.items()))
    if failure is not None:
        document["error"] = failure["message"]
    return document


def failure_of(error: Exception, state: Any) -> dict[str, Any]:
    """A deploy that stopped while being prepared: its message, and per host what it says of that host.

    A deploy can name hosts with problems (`problems`: host -> [problem]); otherwise every active
    host is held to the message.
    """
    message = ANSI.sub("", str(error)).strip() or type(error).__name__
    problems = getattr(error, "problems", None)
    if isinstance(problems, dict):
        hosts = {name: "; ".join(found) for name, found in problems.items() if found}
    else:
        hosts = {host.name: message for host in state.inventory.get_active_hosts()}
    return {"message": message, "hosts": hosts}


def results_document(state: Any) -> dict[str, Any]:
    """What ran: per operation and host, changed/unchanged/failed, and its output: a failure's (stderr,
    or stdout when it wrote none), a success's last stdout lines (a report such as the drain's). The
    deploys' secrets are redacted from both."""
    rows, secrets = [], secret_values(state)
    for op_hash in state.get_op_order():
        name = operation_name(state, op_hash)
        for host in state.inventory.iter_activated_hosts():
            if op_hash not in state.ops[host]:
                continue
            meta = state.ops[host][op_hash].operation_meta
            if not meta.is_complete():
                continue
            succeeded = meta.did_succeed(_raise_if_not_complete=False)
            lines = meta.stdout_lines if succeeded else (meta.stderr_lines or meta.stdout_lines)
            output = redacted("\n".join(lines)[-(SUCCESS_OUTPUT if succeeded else FAILURE_OUTPUT) :], secrets)
            result = _changed(meta) if succeeded else "failed"
            rows.append({"host": host.name, "operation": name, "result": result, "output": output})
    return {"operations": rows, "failed_hosts": sorted(host.name for host in state.failed_hosts)}


def redacted(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, REDACTED)
    return text


def _changed(meta: Any) -> str:
    return "changed" if meta.did_change() else "unchanged"


@contextlib.contextmanager
def pyinfra_state(options: argparse.Namespace, check_for_changes: bool) -> Iterator[tuple[Any, str | None]]:
    """pyinfra's state for OPTIONS' inventory, connected to its hosts, as the `pyinfra` command makes it,
    and what stopped pyinfra while connecting (more hosts unreachable than --fail-percent allows), if anything."""
    from pyinfra_cli.inventory import make_inventory  # see CHILD_ONLY

    pyinfra.is_cli = True  # deploy files call operations at their top level, as under the CLI
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    state = State(check_for_changes=check_for_changes)
    state.cwd = cwd
    ctx_state.set(state)
    config = Config()
    if options.fail_percent is not None:
        config.FAIL_PERCENT = options.fail_percent
    ctx_config.set(config)
    logger.info("--> Loading inventory...")
    inventory = make_inventory(options.inventory, override_data=options.data or None, cwd=cwd)
    ctx_inventory.set(inventory)
    limit = [inventory.get_host(name) for name in options.limit] or None
    state.init(inventory, config, initial_limit=limit)
    logger.info("--> Connecting to hosts...")
    state.set_stage(StateStage.Connect)
    stopped = None
    try:
        connect_all(state)
    except PyinfraError as error:
        stopped = ANSI.sub("", str(error))
    try:
        yield state, stopped
    finally:
        state.set_stage(StateStage.Disconnect)
        disconnect_all(state)


def prepare(state: Any, deploy_file: str) -> dict[str, Any] | None:
    """Load DEPLOY_FILE for every active host (pyinfra's prepare stage); a failure it raised, or None."""

    from pyinfra_cli.util import load_deploy_file  # see CHILD_ONLY

    logger.info("--> Preparing operation files...")
    state.set_stage(StateStage.Prepare)
    state.config.lock_current_state()
    try:
        load_deploy_file(state, deploy_file)
    except (PyinfraError, Exception) as error:  # a deploy's own error stops every host, as in the CLI
        # pyinfra's CLI wraps an error raised by deploy code (UnexpectedExternalError): the deploy's own one counts.
        return failure_of(getattr(error, "exception", None) or error, state)
    finally:
        state.config.reset_locked_state()
    return None


def execute(state: Any) -> dict[str, Any]:
    """Run the prepared operations; pyinfra stopping (no host left, over --fail-percent) is a result too."""

    logger.info("--> Beginning operation run...")
    state.set_stage(StateStage.Execute)
    stopped = None
    try:
        run_ops(state)
    except PyinfraError as error:
        stopped = ANSI.sub("", str(error))
    logger.info("--> Results:")
    results = results_document(state)
    results["stopped"] = stopped
    return results


def session(options: argparse.Namespace) -> tuple[dict[str, Any], int]:
    """Plan OPTIONS' deploy file and, when asked, run it; the JSON answer and the exit code."""

    notes = NoteRecorder()
    logging.getLogger("pyinfra").addHandler(notes)
    needs_plan = not options.execute or options.expect_digest is not None
    with pyinfra_state(options, check_for_changes=needs_plan) as (state, stopped):
        if stopped is not None:
            return stopped_at_connect(state, options, notes, stopped, needs_plan), EXIT_FAILED
        failure = prepare(state, options.deploy_file)
        plan = plan_document(state, options.checkpoint, notes, failure, options.data) if needs_plan else None
        if failure is not None:
            return {"plan": plan, "results": None, "refused": False, "failure": failure}, EXIT_FAILED
        if options.execute and plan is not None and digest_of(plan) != options.expect_digest:
            return {"plan": plan, "results": None, "refused": True}, EXIT_REFUSED
        results = execute(state) if options.execute else None
    failed = bool(results and (results["failed_hosts"] or results["stopped"]))
    return {"plan": plan, "results": results, "refused": False}, EXIT_FAILED if failed else EXIT_OK


def die_with_parent() -> None:
    """This process is killed when the raydeploy process that started it (RAYDEPLOY_PARENT_PID) dies.

    Set here, in the child, rather than in the parent's preexec_fn, which is not safe in a process
    with threads (the API server's); a parent that died before this line is noticed just after it.
    """
    parent = int(os.environ.get("RAYDEPLOY_PARENT_PID") or 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        return
    if parent and os.getppid() != parent:
        os._exit(EXIT_FAILED)


def answer_stream() -> TextIO:
    """Where the JSON answer goes: stdout as it was, kept aside. Stdout itself then goes to stderr, so
    whatever else deploy code or pyinfra print (a prompt without a newline) joins the log, never the answer."""
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return answer


def stopped_at_connect(
    state: Any, options: argparse.Namespace, notes: NoteRecorder, message: str, needs_plan: bool
) -> dict[str, Any]:
    """The answer when pyinfra stopped after connecting: the unreachable hosts failed (their own log lines
    say why), the hosts it reached were not planned, and nothing ran."""
    message = f"{message}: more hosts could not be reached than --fail-percent allows, so nothing ran"
    reached = {host.name: f"not planned: {message}" for host in state.inventory if host.connected}
    failure = {"message": message, "hosts": reached}
    # With no host reached there is no plan to show: planning fails with what SSH said of each host.
    plan = plan_document(state, options.checkpoint, notes, failure, options.data) if needs_plan and reached else None
    results = {"operations": [], "failed_hosts": sorted(host.name for host in state.failed_hosts), "stopped": message}
    return {"plan": plan, "results": results, "refused": False}


def main(argv: list[str] | None = None) -> int:

    from pyinfra_cli.log import setup_logging  # see CHILD_ONLY

    die_with_parent()
    answer_to = answer_stream()
    options = arguments(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("PYINFRA_PROGRESS", "off")
    set_formatter(click.style)
    set_echo(click.echo)
    setup_logging(logging.INFO)
    sys.dont_write_bytecode = True
    answer, code = session(options)
    print(json.dumps(answer, default=str), file=answer_to, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
