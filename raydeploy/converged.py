"""What each successful run converged to, recorded for `raydeploy rollback` (deploys/recorded_specs.py),
and which recorded spec a rollback goes back to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from deploys.recorded_specs import SpecError, read_spec, recorded_runs, spec_of, write_spec
from validate.inventory import InventoryError, load

# Runs that bring the cluster to a spec: the inventory's, or (rollback) a recorded one.
CONVERGING = ("ray-deployment", "rollback")


def inventory_spec(inventory: str, state_dir: str) -> dict[str, Any]:
    """The spec INVENTORY describes now; SpecError when it cannot be read."""
    try:
        return spec_of(load(inventory, state_dir).cluster)
    except InventoryError as problem:
        raise SpecError(str(problem)) from None


def record_converged(inventory: str, state_dir: str, run_id: str, checkpoints: list[str], data: dict[str, str]) -> str:
    """Record the spec successful run RUN_ID converged to, when it deployed Ray; its digest, or ""."""
    if "rollback" in checkpoints:
        spec = strip(read_spec(state_dir, data["rollback_to"]))
        write_spec(state_dir, run_id, spec, rolled_back_to=data["rollback_to"])
    elif "ray-deployment" in checkpoints:
        spec = inventory_spec(inventory, state_dir)
        write_spec(state_dir, run_id, spec)
    else:
        return ""
    return spec["digest"]


def strip(spec: dict[str, Any]) -> dict[str, Any]:
    """SPEC without what a recorded file adds (its run, where it went back to)."""
    return {key: spec[key] for key in ("hosts", "monitoring", "digest")}


def rollback_candidate(inventory: str, state_dir: str) -> str | None:
    """The run `raydeploy rollback` goes back to by default: the latest recorded spec that differs from
    the inventory's now."""
    current = inventory_spec(inventory, state_dir)["digest"]
    return next((run_id for run_id, digest in readable_specs(state_dir) if digest != current), None)


def last_good(state_dir: str) -> tuple[str, str] | None:
    """The last good spec, for --rollback-on-failure: the newest run that recorded one, and its digest."""
    return next(readable_specs(state_dir), None)


def readable_specs(state_dir: str) -> Iterator[tuple[str, str]]:
    """(run id, digest) of every recorded spec that reads back whole, newest first: an altered or
    unreadable record is never gone back to."""
    for run_id in reversed(recorded_runs(state_dir)):
        try:
            yield run_id, read_spec(state_dir, run_id)["digest"]
        except SpecError:
            continue
