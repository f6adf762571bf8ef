"""The Docker engine on this machine, driven through the `docker` CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

HOW_TO_GET_AN_ENGINE = (
    "Install and start one as root: `apt-get install -y docker.io && "
    "(setsid dockerd >/var/log/dockerd.log 2>&1 &)`, or run `scripts/docker-engine`, "
    "which does both and waits until the engine answers."
)


class EngineError(RuntimeError):
    """A docker command failed; the message names the command and what docker said."""


class NoEngineError(EngineError):
    """No Docker engine answers on this machine."""


@dataclass(frozen=True)
class Engine:
    """Runs docker commands; every failure becomes an EngineError that quotes docker's own words."""

    binary: str = "docker"

    def run(
        self,
        args: Sequence[str],
        *,
        input_bytes: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        try:
            completed = subprocess.run(
                [self.binary, *args],
                input=input_bytes.decode() if input_bytes is not None else None,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise NoEngineError(f"The `{self.binary}` command is not installed. {HOW_TO_GET_AN_ENGINE}") from exc
        if check and completed.returncode != 0:
            raise EngineError(
                f"`docker {' '.join(args)}` failed (exit {completed.returncode}): "
                f"{completed.stderr.strip() or completed.stdout.strip()}"
            )
        return completed

    def ping(self) -> str:
        """The engine's version; raises NoEngineError when no engine answers."""
        completed = self.run(["info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
        version = completed.stdout.strip()
        if completed.returncode != 0 or not version or version == "<no value>":
            detail = completed.stderr.strip().splitlines()
            raise NoEngineError(
                f"No Docker engine is reachable ({detail[-1] if detail else 'docker info failed'}). "
                f"{HOW_TO_GET_AN_ENGINE}"
            )
        return version

    def inspect(self, kind: str, name: str) -> dict | None:
        """`docker <kind> inspect NAME` as a dict, or None when there is no such object."""
        completed = self.run([kind, "inspect", name], check=False)
        if completed.returncode != 0:
            return None
        found = json.loads(completed.stdout)
        return found[0] if found else None

    def ids_with_label(self, kind: str, label: str) -> list[str]:
        """Names of containers, volumes or networks carrying LABEL (`key` or `key=value`); for images, their ids."""
        fmt = {"volume": "{{.Name}}", "network": "{{.Name}}", "image": "{{.ID}}"}.get(kind, "{{.Names}}")
        extra = ["--all"] if kind == "container" else []
        completed = self.run([kind, "ls", *extra, "--filter", f"label={label}", "--format", fmt])
        return list(dict.fromkeys(line for line in completed.stdout.splitlines() if line.strip()))
