"""The spec a successful run converged to: every Ray node's role and settings (images included), kept
in the state directory as `specs/<run id>.json` (0600), so that `raydeploy rollback` can go back to it.

The wrapper writes one after each run that converged the cluster (raydeploy/converged.py); the
rollback deploy (deploys/rollback.py) reads one. A spec holds settings only: secrets stay in the
state directory's `secrets/`, which a rollback uses as they are now.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from deploys.topology import Cluster, build_cluster

# Where this control host keeps secrets: not the cluster's, and not what a rollback restores.
LOCAL = {"state_dir"}
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")


class SpecError(ValueError):
    """A recorded spec that cannot be had: the message names the run and what to do."""


def spec_of(cluster: Cluster) -> dict[str, Any]:
    """CLUSTER's spec: per host its role and settings, and the digest of both."""
    body = {
        "hosts": {
            node.name: {"role": node.role, "settings": node.settings.model_dump(mode="json", exclude=LOCAL)}
            for node in cluster.hosts
        },
        "monitoring": [node.name for node in cluster.monitoring],
    }
    return {**body, "digest": digest_of(body)}


def cluster_of(spec: dict[str, Any], local: Cluster | None = None) -> Cluster:
    """The cluster SPEC describes (its settings checked again, as an inventory's are), each host with
    LOCAL's settings of this control host (state_dir: where its secrets are) when LOCAL has it."""
    here = {node.name: node.settings for node in local.hosts} if local else {}
    hosts = {
        name: {**host, "settings": host["settings"] | {key: getattr(here[name], key) for key in LOCAL}}
        if name in here
        else host
        for name, host in spec["hosts"].items()
    }
    groups = {
        "head": [name for name, host in hosts.items() if host["role"] == "head"],
        "workers": [name for name, host in hosts.items() if host["role"] == "worker"],
        "monitoring": spec["monitoring"],
    }
    return build_cluster(((name, host["settings"]) for name, host in hosts.items()), groups)


def digest_of(body: dict[str, Any]) -> str:
    """The digest of a spec's hosts and monitoring group."""
    covered = {"hosts": body.get("hosts", {}), "monitoring": body.get("monitoring", [])}
    return hashlib.sha256(json.dumps(covered, sort_keys=True).encode()).hexdigest()[:16]


def spec_path(state_dir: str | Path, run_id: str) -> Path:
    if not RUN_ID.match(run_id):
        raise SpecError(f"{run_id!r} is not a run id (like 20261130T101500Z-1a2b3c): see `raydeploy history`")
    return Path(state_dir) / "specs" / f"{run_id}.json"


def write_spec(state_dir: str | Path, run_id: str, spec: dict[str, Any], **extra: str) -> Path:
    """Record SPEC as RUN_ID's (with EXTRA fields such as rolled_back_to), 0600, whole or not at all."""
    path = spec_path(state_dir, run_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        json.dump({"run_id": run_id, **extra, **spec}, file, indent=1, sort_keys=True)
    temporary.replace(path)
    return path


def read_spec(state_dir: str | Path, run_id: str) -> dict[str, Any]:
    """RUN_ID's recorded spec; SpecError when there is none or it was altered (its digest no longer holds)."""
    path = spec_path(state_dir, run_id)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"run {run_id} recorded no spec (only successful runs that deployed Ray do)") from None
    except (OSError, ValueError) as error:
        raise SpecError(f"the spec of run {run_id} cannot be read ({path}): {error}") from None
    if spec.get("digest") != digest_of(spec):
        raise SpecError(f"the spec of run {run_id} ({path}) does not match its digest: it was altered")
    return spec


def recorded_runs(state_dir: str | Path) -> list[str]:
    """The runs that recorded a spec, oldest first: by the second each started (a run id begins with it;
    one run at a time holds the lock), then by when the spec was written, for runs of the same second."""
    paths = [path for path in (Path(state_dir) / "specs").glob("*.json") if RUN_ID.match(path.stem)]
    return [path.stem for path in sorted(paths, key=lambda path: (path.stem[:16], path.stat().st_mtime_ns))]


def settings_changes(current: dict[str, Any], target: dict[str, Any]) -> dict[str, list[str]]:
    """Per host, each setting that differs between spec CURRENT and spec TARGET: "key: now -> back to"."""
    changes = {}
    for name, host in target["hosts"].items():
        now = current["hosts"].get(name, {}).get("settings", {})
        differ = [
            f"{key}: {now.get(key)!r} -> {value!r}"
            for key, value in sorted(host["settings"].items())
            if now.get(key) != value
        ]
        if differ:
            changes[name] = differ
    return changes
