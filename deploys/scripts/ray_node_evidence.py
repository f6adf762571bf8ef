"""Run on a Ray node's host: what that node's own side says about why it is (not) in the cluster.

    python3 ray_node_evidence.py CONTAINER HEAD_ADDRESS GCS_PORT ADVERTISED_ADDRESS

Prints one JSON document: the container's state and last log lines, whether raylet runs in it and
its last error lines, the Ray and Python versions in it, whether this host reaches the head's GCS
port, the address the node advertises and this host's own addresses. raydeploy/diagnose.py reads
it; nothing here decides anything.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

# Ray's version as `ray.__version__` gives it (ray/_version.py), read without importing Ray (slow).
VERSIONS = (
    "import importlib.util, os, re, sys; "
    "path = os.path.join(os.path.dirname(importlib.util.find_spec('ray').origin), '_version.py'); "
    "print(re.search(r'^version = .(\\S+).$', open(path).read(), re.M).group(1), sys.version.split()[0])"
)
RAYLET_LOGS = "/tmp/ray/session_latest/logs"
RAY_LOG_LEVEL = re.compile(r"^\[\S+ \S+ ([A-Z]) \d+ \d+\]")


def run(*command: str, timeout: float = 20) -> tuple[int, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, (done.stdout + done.stderr).strip()


def container_state(name: str) -> dict:
    code, output = run("docker", "inspect", name)
    if code != 0:
        return {"exists": False}
    found = json.loads(output)[0]
    state = found.get("State") or {}
    return {
        "exists": True,
        "status": state.get("Status", ""),
        "running": bool(state.get("Running")),
        "exit_code": state.get("ExitCode", 0),
        "restart_count": found.get("RestartCount", 0),
        "image": (found.get("Config") or {}).get("Image", ""),
        "command": " ".join((found.get("Config") or {}).get("Cmd") or []),
    }


def error_lines(text: str, keep: int = 5) -> list[str]:
    """The last KEEP lines of raylet's log TEXT that say something went wrong: its error and fatal
    lines (`[time E|F pid tid] ...`) and any naming a version mismatch."""
    found = []
    for line in text.splitlines():
        level = RAY_LOG_LEVEL.match(line)
        if (level and level.group(1) in "EF") or "mismatch" in line.lower():
            found.append(line.strip())
    return found[-keep:]


def inside(name: str) -> dict:
    """What the running container says: raylet, its errors, the versions."""
    raylet = run("docker", "exec", name, "pgrep", "-x", "raylet")[0] == 0
    logs = run("docker", "exec", name, "sh", "-c", f"tail -n 300 {RAYLET_LOGS}/raylet.out {RAYLET_LOGS}/raylet.err")[1]
    code, versions = run("docker", "exec", name, "python", "-c", VERSIONS)
    found = versions.split()
    ray_version, python_version = found[:2] if code == 0 and len(found) >= 2 else ("", "")
    return {"raylet": raylet, "raylet_errors": error_lines(logs), "ray": ray_version, "python": python_version}


def image_versions(image: str) -> dict:
    """The versions in IMAGE, for a container that is not running (a restart loop, say)."""
    if not image:
        return {"ray": "", "python": ""}
    code, versions = run("docker", "run", "--rm", "--entrypoint", "python", image, "-c", VERSIONS, timeout=60)
    found = versions.split()
    return {"ray": found[0], "python": found[1]} if code == 0 and len(found) >= 2 else {"ray": "", "python": ""}


def reaches(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def host_addresses() -> list[str]:
    output = run("ip", "-o", "-4", "addr", "show")[1]
    return sorted({field.split("/")[0] for line in output.splitlines() for field in line.split()[3:4]})


def main(arguments: list[str]) -> int:
    name, head_address, gcs_port, advertised = arguments[0], arguments[1], int(arguments[2]), arguments[3]
    evidence = {"container": container_state(name), "advertised": advertised, "addresses": host_addresses()}
    evidence["logs"] = run("docker", "logs", "--tail", "15", name)[1].splitlines()[-15:]
    evidence["gcs"] = {"address": f"{head_address}:{gcs_port}", "reachable": reaches(head_address, gcs_port)}
    if evidence["container"].get("running"):
        evidence |= inside(name)
    else:
        evidence |= {"raylet": False, "raylet_errors": []} | image_versions(evidence["container"].get("image", ""))
    print(json.dumps(evidence))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
