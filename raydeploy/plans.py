"""Plans and runs of one checkpoint, through pyinfra's own CLI and its JSON output.

A plan is pyinfra's dry run of the checkpoint's deploy file: per host, the operations that would
change something, and what the deploy says it will do (the `docker run` it would issue, what the
cleanup would remove). Its digest covers exactly that, so an approval bound to it stops counting
the moment the plan differs. The inventory's fingerprint covers the inventory's hosts and data.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raydeploy.checkpoints import Checkpoint

REPO = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
# Host log lines that say what a deploy will do (part of the plan and its digest).
PLAN_NOTE = re.compile(
    r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<note>(will |cleanup|prerequisite failed|monitoring-deployment: ).*)$"
)
ERROR_WORD = re.compile(r"\b(error|failed|exception)\b", re.IGNORECASE)
HOST_LINE = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<text>.*)$")


class PlanError(Exception):
    """pyinfra could not plan or run the checkpoint; the message holds what it printed."""


def fingerprint(inventory: str) -> str:
    """A digest of the inventory's hosts, groups and data (what the deploys are given)."""
    from validate.inventory import read_inventory_file

    try:
        members, groups = read_inventory_file(inventory)
    except SystemExit as error:
        raise PlanError(f"inventory {inventory}: {error}") from None
    except Exception as error:
        raise PlanError(f"inventory {inventory} cannot be read: {type(error).__name__}: {error}") from None
    body = json.dumps({"hosts": members, "groups": groups}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass
class Plan:
    checkpoint: str
    fingerprint: str
    changes: dict[str, list[str]] = field(default_factory=dict)  # host -> operations that would change
    notes: dict[str, list[str]] = field(default_factory=dict)  # host -> what the deploy says it will do
    unreachable: list[str] = field(default_factory=list)  # hosts pyinfra could not reach to plan

    @property
    def digest(self) -> str:
        body = json.dumps(
            {
                "checkpoint": self.checkpoint,
                "changes": self.changes,
                "notes": self.notes,
                "unreachable": self.unreachable,
            },
            sort_keys=True,
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    @property
    def has_changes(self) -> bool:
        return any(self.changes.values())

    def summary(self) -> dict[str, dict[str, object]]:
        """Per host: how many operations change, which, and the deploy's own notes."""
        hosts = sorted(set(self.changes) | set(self.notes))
        return {
            host: {
                "changes": len(self.changes.get(host, [])),
                "operations": self.changes.get(host, []),
                "notes": self.notes.get(host, []),
            }
            for host in hosts
        }

    def describe(self) -> str:
        lines = [f"plan for {self.checkpoint} (digest {self.digest}, inventory {self.fingerprint}):"]
        if not self.has_changes and not any(self.notes.values()):
            lines.append("  no changes")
        for host in self.unreachable:
            lines.append(f"  {host}: UNREACHABLE, not planned")
        for host, entry in self.summary().items():
            lines.append(f"  {host}: {entry['changes']} change(s)")
            lines += [f"    ~ {operation}" for operation in entry["operations"]]
            lines += [f"    ! {note}" for note in entry["notes"]]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "checkpoint": self.checkpoint,
            "digest": self.digest,
            "fingerprint": self.fingerprint,
            "has_changes": self.has_changes,
            "unreachable": self.unreachable,
            "hosts": self.summary(),
        }


def pyinfra_command(
    inventory: str, checkpoint: Checkpoint, dry: bool, limit: list[str] | None = None, fail_percent: int | None = None
) -> list[str]:
    command = [PYINFRA, "--json", "-y"] if not dry else [PYINFRA, "--json"]
    command += [str(Path(inventory).resolve()), checkpoint.deploy_file]
    if dry:
        command.append("--dry")
    for host in limit or []:
        command += ["--limit", host]
    if fail_percent is not None:
        command += ["--fail-percent", str(fail_percent)]
    return command


def _json_of(stdout: str) -> dict:
    start = stdout.find("{")
    if start < 0:
        raise ValueError("no JSON in pyinfra's output")
    return json.loads(stdout[start:])


def _die_with_parent() -> None:
    """In the pyinfra child: its own session (no terminal to prompt on), killed if the wrapper dies."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run_pyinfra(command: list[str], env: dict[str, str] | None, **kwargs):
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
        **kwargs,
    )


HINTS = (
    (
        re.compile(r"sudo: (a )?password is required|sudo: a terminal is required|no tty present", re.I),
        "sudo on this host needs a password: give the SSH user passwordless sudo, or set _sudo_password in its host data",
    ),
    (
        re.compile(r"Could not connect|SSH error|Authentication failed|No authentication methods", re.I),
        "SSH failed: check the host's ssh_hostname, ssh_port, ssh_user and ssh_key in the inventory, and that it is up",
    ),
)


def unreachable_line(text: str) -> bool:
    """pyinfra's words for a host it could not connect to."""
    lowered = text.lower()
    return "could not connect" in lowered or "ssh error" in lowered or "connection refused" in lowered


def hint(text: str) -> str:
    """A fix for what TEXT shows went wrong, when we know one."""
    return next((advice for pattern, advice in HINTS if pattern.search(text)), "")


def make_plan(
    inventory: str, checkpoint: Checkpoint, limit: list[str] | None = None, env: dict[str, str] | None = None
) -> Plan:
    """The dry run of CHECKPOINT on INVENTORY's hosts (nothing changes on them)."""
    fingerprint_now = fingerprint(inventory)
    process = _run_pyinfra(pyinfra_command(inventory, checkpoint, dry=True, limit=limit), env)
    stdout, stderr = process.communicate()
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    unreachable = sorted(
        {m["host"] for m in map(HOST_LINE.match, completed.stderr.splitlines()) if m and unreachable_line(m["text"])}
    )
    try:
        document = _json_of(completed.stdout)
    except ValueError:
        document = None
    # pyinfra still plans for the hosts it reached when others are down: those join the plan as unreachable.
    if document is None or (completed.returncode != 0 and not unreachable):
        advice = hint(completed.stderr)
        raise PlanError(
            f"planning {checkpoint.name} failed:\n{_tail(completed.stderr)}" + (f"\nfix: {advice}" if advice else "")
        )
    plan = Plan(checkpoint.name, fingerprint_now)
    plan.unreachable = unreachable
    for operation in document.get("plan", []):
        for host in operation.get("hosts_with_change", []) + operation.get("hosts_with_conditional_change", []):
            plan.changes.setdefault(host, []).append(operation["name"])
    for line in completed.stderr.splitlines():
        match = PLAN_NOTE.match(line)
        if match:
            plan.notes.setdefault(match["host"], []).append(match["note"].strip())
    return plan


@dataclass
class Execution:
    ok: bool
    changed: int
    rows: list[tuple[str, str, str, str]]  # host, operation, changed|unchanged|failed, stderr
    failed_hosts: list[str]
    error: str


def execute(
    inventory: str,
    checkpoint: Checkpoint,
    log: Callable[[str], None],
    limit: list[str] | None = None,
    fail_percent: int | None = None,
    env: dict[str, str] | None = None,
) -> Execution:
    """Run CHECKPOINT for real; every line pyinfra prints goes to LOG as it comes."""
    process = _run_pyinfra(
        pyinfra_command(inventory, checkpoint, dry=False, limit=limit, fail_percent=fail_percent), env
    )
    errors: dict[str, list[str]] = {}
    stderr_lines: list[str] = []
    assert process.stderr is not None and process.stdout is not None
    for line in process.stderr:
        line = line.rstrip("\n")
        stderr_lines.append(line)
        log(line)
        match = HOST_LINE.match(line)
        if match and (ERROR_WORD.search(match["text"]) or unreachable_line(match["text"])):
            errors.setdefault(match["host"], []).append(match["text"].strip())
    stdout = process.stdout.read()
    code = process.wait()
    try:
        document = _json_of(stdout)
    except ValueError:
        message = _tail("\n".join(stderr_lines))
        return Execution(False, 0, [], sorted(errors), message or f"pyinfra exited {code}")
    rows: list[tuple[str, str, str, str]] = []
    failed: set[str] = set()
    changed = 0
    for operation in (document.get("results") or {}).get("operations", []):
        name = operation["name"]
        for host in operation.get("success", []):
            rows.append((host, name, "changed", ""))
            changed += 1
        for host in operation.get("no_change", []):
            rows.append((host, name, "unchanged", ""))
        for host in operation.get("error", []):
            rows.append((host, name, "failed", "\n".join(errors.get(host, []))[-4000:]))
            failed.add(host)
    # A host that could not be reached takes part in no operation: it failed the checkpoint too.
    for host, messages in errors.items():
        if host not in failed and any(unreachable_line(message) for message in messages):
            rows.append((host, "connect", "failed", "\n".join(messages)[-4000:]))
            failed.add(host)
    ok = code == 0 and not failed
    error = (
        ""
        if ok
        else "; ".join(f"{host}: {' | '.join(errors.get(host, ['failed']))[:500]}" for host in sorted(failed))
        or _tail("\n".join(stderr_lines))
    )
    advice = hint("\n".join(stderr_lines)) if not ok else ""
    if advice:
        error += f" (fix: {advice})"
    return Execution(ok, changed, rows, sorted(failed), error)


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
