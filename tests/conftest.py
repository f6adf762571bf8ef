"""Shared test plumbing: run the real `raydeploy` and `pyinfra` commands as a user would."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session", autouse=True)
def audit_key_directory(tmp_path_factory) -> Iterator[Path]:
    """Every test, and every command it starts (their environment is this one's), keeps audit trail keys
    in a directory of its own: never in the real ~/.config/raydeploy/audit-keys."""
    directory = tmp_path_factory.mktemp("audit-keys")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAYDEPLOY_AUDIT_KEY_DIR", str(directory))
        yield directory


def run_command(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 900, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a project command from the repository root; its output is kept for the assertion message."""
    completed = subprocess.run(
        args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {completed.returncode}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
        )
    return completed


@pytest.fixture
def raydeploy_cli():
    """Call the installed `raydeploy` console script."""

    def call(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
        return run_command([str(BIN / "raydeploy"), *args], env=env, **kwargs)

    return call


def plan_of(checkpoint: str, fingerprint: str, changes: dict[str, list[str]], notes: dict | None = None):
    """A plan document with CHANGES (host -> operation names, each one `echo NAME` command), for unit tests."""
    from raydeploy.plans import Plan

    hosts = {
        host: {
            "status": "planned",
            "operations": [
                {"name": name, "commands": [{"type": "shell", "command": f"echo {name}", "sha256": name}]}
                for name in operations
            ],
            "notes": (notes or {}).get(host, []),
        }
        for host, operations in changes.items()
    }
    return Plan(checkpoint, fingerprint, {"hosts": hosts})


@contextlib.contextmanager
def api_server(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`raydeploy api ARGS` on a free loopback port, once /healthz answers; yields its base URL, stops it after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = log_path.open("w")
    server = subprocess.Popen(
        [str(BIN / "raydeploy"), "api", *args, "--port", str(port)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
