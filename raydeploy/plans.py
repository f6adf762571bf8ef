"""Plans and runs of one checkpoint: pyinfra's own knowledge of what would run, as versioned data.

A plan is made by preparing the checkpoint's deploy file with pyinfra's API in a child process
(raydeploy/pyinfra_session.py). Its document, format `PLAN_FORMAT`:

    {"format": 1, "checkpoint": "docker-installation",
     "hosts": {"head": {"status": "planned",           # or "unreachable", "failed" (+ "error")
                        "operations": [{"name": "Render /etc/docker/daemon.json",
                                        "commands": [{"type": "upload", "dest": "/etc/docker/daemon.json",
                                                      "sha256": "<hash of the file's content>"},
                                                     {"type": "shell", "command": "chmod 644 ...",
                                                      "sha256": "<hash of the command as run>"}]}],
                        "notes": ["will create container ray-head: docker run ..."]}}}

Its digest covers, per host, the status (and a failed host's error) and, per operation that would
change something, its name and every command: a shell command's text and a hash of it as run
(secrets included), a file's destination and a hash of its content (never the content), and a
day-2 action's arguments (`"data"`: host data given to every host) when it has any. Notes are
what the deploy says for people: shown, never part of the digest, so rewording one changes no plan.
An approval binds to the digest (raydeploy/approvals.py); the inventory's fingerprint covers the
inventory's hosts and data besides.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raydeploy.checkpoints import Checkpoint

REPO = Path(__file__).resolve().parent.parent
PLAN_FORMAT = 1
ERROR_WORD = re.compile(r"\b(error|failed|exception)\b", re.IGNORECASE)
HOST_LINE = re.compile(r"^\s*\[(?P<host>[^\]]+)\]\s+(?P<text>.*)$")


class PlanError(Exception):
    """pyinfra could not plan or run the checkpoint; the message says what it printed."""


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


def digest_of(document: dict[str, Any]) -> str:
    """The digest of a plan document: everything but the notes (see the module's docstring)."""
    hosts = {
        name: {key: value for key, value in entry.items() if key != "notes"}
        for name, entry in document.get("hosts", {}).items()
    }
    body = {
        "format": document.get("format"),
        "checkpoint": document.get("checkpoint"),
        "error": document.get("error"),
        "hosts": hosts,
    }
    if document.get("data"):  # an action's arguments (absent from a checkpoint's plan: its digest is as before)
        body["data"] = document["data"]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Plan:
    """A plan document of one checkpoint, and the inventory fingerprint it was made with."""

    checkpoint: str
    fingerprint: str
    document: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.document = {"format": PLAN_FORMAT, "checkpoint": self.checkpoint, "hosts": {}} | self.document

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        return self.document["hosts"]

    @property
    def digest(self) -> str:
        return digest_of(self.document)

    @property
    def changes(self) -> dict[str, list[str]]:
        """Per host, the names of the operations that would change something."""
        return {
            name: [operation["name"] for operation in entry.get("operations", [])]
            for name, entry in self.hosts.items()
            if entry.get("operations")
        }

    @property
    def notes(self) -> dict[str, list[str]]:
        return {name: entry["notes"] for name, entry in self.hosts.items() if entry.get("notes")}

    @property
    def unreachable(self) -> list[str]:
        return sorted(name for name, entry in self.hosts.items() if entry.get("status") == "unreachable")

    @property
    def failed(self) -> dict[str, str]:
        """Hosts the deploy stopped on while planning, with what it said."""
        return {name: entry["error"] for name, entry in self.hosts.items() if entry.get("status") == "failed"}

    @property
    def has_changes(self) -> bool:
        return any(self.changes.values())

    @property
    def disruptions(self) -> dict[str, list[str]]:
        """Per host, what its changes disrupt cluster-wide (deploys/disruptions.py), in words."""
        return {
            name: [found["summary"] for found in entry["disruptions"]]
            for name, entry in self.hosts.items()
            if entry.get("disruptions")
        }

    @property
    def disruptive(self) -> bool:
        """Whether running this plan interrupts the whole cluster (it then needs an approval)."""
        return bool(self.disruptions)

    def summary(self) -> dict[str, dict[str, object]]:
        """Per host: how many operations change, which, and the deploy's own notes."""
        return {
            host: {
                "changes": len(self.changes.get(host, [])),
                "operations": self.changes.get(host, []),
                "notes": self.notes.get(host, []),
            }
            for host in sorted(set(self.changes) | set(self.notes))
        }

    def describe(self, commands: bool = False) -> str:
        """The plan for people: per host its operations (with COMMANDS: what each runs) and notes."""
        lines = [f"plan for {self.checkpoint} (digest {self.digest}, inventory {self.fingerprint}):"]
        if self.document.get("data"):
            lines.append("  with " + ", ".join(f"{key}={value}" for key, value in self.document["data"].items()))
        if not self.has_changes and not self.notes and not self.failed:
            lines.append("  no changes")
        lines += [f"  DISRUPTIVE ({host}): {said}" for host, found in self.disruptions.items() for said in found]
        lines += [f"  {host}: UNREACHABLE, not planned" for host in self.unreachable]
        lines += [f"  {host}: FAILED: {error}" for host, error in sorted(self.failed.items())]
        for host, entry in sorted(self.hosts.items()):
            if entry.get("status") != "planned" or not (entry.get("operations") or entry.get("notes")):
                continue
            lines.append(f"  {host}: {len(entry.get('operations', []))} change(s)")
            for operation in entry.get("operations", []):
                lines.append(f"    ~ {operation['name']}")
                lines += [f"        {shown(command)}" for command in operation["commands"] if commands]
            lines += [f"    ! {note}" for note in entry.get("notes", [])]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "checkpoint": self.checkpoint,
            "digest": self.digest,
            "fingerprint": self.fingerprint,
            "has_changes": self.has_changes,
            "disruptive": self.disruptive,
            "disruptions": self.disruptions,
            "unreachable": self.unreachable,
            "hosts": self.summary(),
            "plan": self.document,
        }


def shown(command: dict[str, str]) -> str:
    """One planned command in a line: a shell command's text, or what a file transfer does."""
    if command["type"] == "shell":
        return f"$ {command['command']}"
    if command["type"] == "upload":
        return f"upload {command['dest']} (sha256 {command['sha256'][:12]})"
    if command["type"] == "download":
        return f"download {command['src']} -> {command['dest']}"
    return f"{command['type']} {command.get('function', '')} (sha256 {command['sha256'][:12]})".replace("  ", " ")


def difference(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What differs between two plan documents, per host: operations added, removed, or whose commands changed."""
    parts = []
    for host in sorted(set(before.get("hosts", {})) | set(after.get("hosts", {}))):
        old, new = before.get("hosts", {}).get(host, {}), after.get("hosts", {}).get(host, {})
        if old.get("status") != new.get("status"):
            parts.append(f"{host}: {old.get('status', 'absent')} -> {new.get('status', 'absent')}")
            continue
        bits = _operation_changes(_numbered(old), _numbered(new))
        if old.get("error") != new.get("error"):
            bits.append(f"error now: {new.get('error')}")
        if bits:
            parts.append(f"{host}: {', '.join(bits)}")
    return parts


def _numbered(host_plan: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """A host's operations by (name, how many of that name came before): a name may repeat."""
    seen: dict[str, int] = {}
    numbered = {}
    for operation in host_plan.get("operations", []):
        numbered[(operation["name"], seen.get(operation["name"], 0))] = operation
        seen[operation["name"]] = seen.get(operation["name"], 0) + 1
    return numbered


def _operation_changes(old: dict[tuple[str, int], dict], new: dict[tuple[str, int], dict]) -> list[str]:
    def first(operation: dict[str, Any]) -> str:
        return f" ({shown(operation['commands'][0])[:100]})" if operation["commands"] else ""

    bits = [f"+{key[0]}{first(operation)}" for key, operation in new.items() if key not in old]
    bits += [f"-{key[0]}{first(operation)}" for key, operation in old.items() if key not in new]
    bits += [
        f"{key[0]}: commands changed"
        for key, operation in new.items()
        if key in old and old[key]["commands"] != operation["commands"]
    ]
    return bits


def session_command(
    inventory: str,
    checkpoint: Checkpoint,
    run: bool,
    limit: list[str] | None = None,
    fail_percent: int | None = None,
    expect_digest: str | None = None,
    data: dict[str, str] | None = None,
) -> list[str]:
    """The child process that plans (and with RUN, runs) CHECKPOINT: raydeploy/pyinfra_session.py."""
    command = [
        sys.executable,
        "-m",
        "raydeploy.pyinfra_session",
        str(Path(inventory).resolve()),
        checkpoint.deploy_file,
    ]
    command += ["--checkpoint", checkpoint.name]
    command += [argument for host in limit or [] for argument in ("--limit", host)]
    if run:
        command.append("--execute")
    if expect_digest:
        command += ["--expect-digest", expect_digest]
    if fail_percent is not None:
        command += ["--fail-percent", str(fail_percent)]
    command += [argument for key, value in sorted((data or {}).items()) for argument in ("--data", f"{key}={value}")]
    return command


def _spawn(command: list[str], state_dir: Path) -> subprocess.Popen[str]:
    """The session child, told the state directory whose secrets the deploys use (and nothing else), in a
    session of its own (no terminal to prompt on); it dies with this process (pyinfra_session.die_with_parent)."""
    return subprocess.Popen(
        command,
        cwd=REPO,
        env={
            **os.environ,
            "RAYDEPLOY_STATE_DIR": str(Path(state_dir).resolve()),
            "RAYDEPLOY_PARENT_PID": str(os.getpid()),
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _answer(stdout: str) -> dict[str, Any] | None:
    """The session's JSON answer: its last line of stdout (deploy code may print before it)."""
    lines = stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


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


def hint(text: str) -> str:
    """A fix for what TEXT shows went wrong, when we know one."""
    return next((advice for pattern, advice in HINTS if pattern.search(text)), "")


def without_repo_paths(text: str) -> str:
    """TEXT without this machine's path of the repository (`/home/me/raydeploy/deploys/x.py` -> `deploys/x.py`)."""
    return text.replace(f"{REPO}/", "")


def make_plan(
    inventory: str,
    checkpoint: Checkpoint,
    state_dir: Path,
    limit: list[str] | None = None,
    data: dict[str, str] | None = None,
) -> Plan:
    """What CHECKPOINT would do on INVENTORY's hosts (nothing changes on them); STATE_DIR holds the
    secrets; DATA is host data for every host (an action's arguments)."""
    fingerprint_now = fingerprint(inventory)
    process = _spawn(session_command(inventory, checkpoint, run=False, limit=limit, data=data), state_dir)
    stdout, stderr = process.communicate()
    answer = _answer(stdout)
    if answer is None or answer.get("plan") is None:
        advice = hint(stderr)
        raise PlanError(
            f"planning {checkpoint.name} failed:\n{without_repo_paths(_tail(stderr))}"
            + (f"\nfix: {advice}" if advice else "")
        )
    return Plan(checkpoint.name, fingerprint_now, answer["plan"])


@dataclass
class Execution:
    """What running a checkpoint did: per host and operation, and why hosts failed (one reason each)."""

    ok: bool
    changed: int
    rows: list[tuple[str, str, str, str]]  # host, operation, changed|unchanged|failed, its output
    failed_hosts: list[str]
    reasons: dict[str, str] = field(default_factory=dict)  # failed host -> why, in a line or a few
    error: str = ""  # what stopped pyinfra as a whole, if anything did
    refused: Plan | None = None  # the plan found instead of the approved one: nothing ran

    @property
    def summary(self) -> str:
        """Each failed host's reason once, then what stopped the run as a whole."""
        lines = [f"{host}: {self.reasons.get(host, 'failed')}" for host in self.failed_hosts]
        return "\n".join(lines + ([self.error] if self.error else []))


def execute(
    inventory: str,
    checkpoint: Checkpoint,
    log: Callable[[str], None],
    limit: list[str] | None = None,
    fail_percent: int | None = None,
    state_dir: Path = Path(".raydeploy"),
    approved: Plan | None = None,
    data: dict[str, str] | None = None,
) -> Execution:
    """Run CHECKPOINT for real (with APPROVED: only if its plan is still that one); pyinfra's lines go to LOG."""
    expect = approved.digest if approved else None
    process = _spawn(session_command(inventory, checkpoint, True, limit, fail_percent, expect, data), state_dir)
    assert process.stderr is not None and process.stdout is not None
    stderr_lines = []
    for line in process.stderr:
        stderr_lines.append(line.rstrip("\n"))
        log(stderr_lines[-1])
    answer, code = _answer(process.stdout.read()), process.wait()
    if answer is None:
        text = "\n".join(stderr_lines)
        advice = hint(text)
        error = without_repo_paths(_tail(text)) or f"pyinfra exited {code}"
        return Execution(False, 0, [], [], error=error + (f" (fix: {advice})" if advice else ""))
    if answer.get("refused"):
        return Execution(False, 0, [], [], refused=Plan(checkpoint.name, approved.fingerprint, answer["plan"]))
    if answer.get("failure"):
        return _stopped_while_preparing(answer["failure"])
    return _results(answer["results"], stderr_lines)


def _stopped_while_preparing(failure: dict[str, Any]) -> Execution:
    reasons = {host: without_repo_paths(reason) for host, reason in failure["hosts"].items()}
    rows = [(host, "prepare", "failed", reason) for host, reason in reasons.items()]
    error = "" if reasons else without_repo_paths(failure["message"])
    return Execution(False, 0, rows, sorted(reasons), reasons, error)


def _results(results: dict[str, Any], stderr_lines: list[str]) -> Execution:
    """An Execution from the session's structured results; a host's own log lines only explain it."""
    rows = [(row["host"], row["operation"], row["result"], row["output"]) for row in results["operations"]]
    failed = results["failed_hosts"]
    reasons = {}
    for host in failed:
        failing = [
            f"{operation}: {_last_line(output)}"
            for name, operation, result, output in rows
            if name == host and result == "failed"
        ]
        reasons[host] = failing[0] if failing else _host_error(host, stderr_lines)
        if not failing:
            rows.append((host, "connect", "failed", reasons[host]))
    changed = sum(1 for row in rows if row[2] == "changed")
    stopped = results.get("stopped") or ""
    error = "" if stopped.startswith("No hosts remaining") else stopped
    return Execution(not failed and not error, changed, rows, failed, reasons, error)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return without_repo_paths(lines[-1]) if lines else "failed"


def _host_error(host: str, stderr_lines: list[str]) -> str:
    """Why HOST failed without an operation failing (it could not be reached): its own last error line."""
    said = [
        match["text"].strip()
        for match in map(HOST_LINE.match, stderr_lines)
        if match and match["host"] == host and (ERROR_WORD.search(match["text"]) or "connect" in match["text"].lower())
    ]
    text = without_repo_paths(said[-1]) if said else "failed"
    advice = hint(text)
    return text + (f" (fix: {advice})" if advice else "")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
