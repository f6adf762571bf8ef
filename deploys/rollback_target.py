"""Where a rollback goes: the cluster a recorded spec describes (deploys/recorded_specs.py), checked
against the inventory's hosts, with what goes back said per host."""

from __future__ import annotations

import os

from pyinfra import host, logger
from pyinfra.api.exceptions import DeployError

from deploys.recorded_specs import SpecError, cluster_of, read_spec, settings_changes, spec_of
from deploys.settings import SettingsError
from deploys.topology import Cluster, Node

ROLLBACK_TO = "rollback_to"  # the action's argument: the run whose spec to go back to


def rollback_target(node: Node, current: Cluster, run_id: object) -> Cluster:
    """The cluster run RUN_ID converged to; DeployError (nothing changed) when there is no such spec or
    its hosts are not the inventory's. On NODE, say which of its settings go back."""
    if not run_id:
        raise DeployError(f"rollback: nothing was changed: give the run to go back to ({ROLLBACK_TO}=RUN_ID)")
    try:
        spec = read_spec(specs_dir(node), str(run_id))
        target = cluster_of(spec, local=current)  # the secrets stay where the inventory keeps them
    except (SpecError, SettingsError) as problem:
        raise DeployError(f"rollback: nothing was changed: {problem}") from None
    problems = membership_problems(current, target, str(run_id))
    if problems:
        raise DeployError("rollback: nothing was changed:\n" + "\n".join(problems))
    for change in settings_changes(spec_of(current), spec).get(node.name, []):
        host.log(f"goes back: {change}", logger.info)
    return target


def specs_dir(node: Node) -> str:
    """Where the wrapper recorded the specs: its state directory ($RAYDEPLOY_STATE_DIR, which it gives the
    pyinfra child), else the host's state_dir as a plain `pyinfra` run has it."""
    return os.environ.get("RAYDEPLOY_STATE_DIR") or node.settings.state_dir


def membership_problems(current: Cluster, target: Cluster, run_id: str) -> list[str]:
    """Why TARGET's hosts cannot replace CURRENT's: a rollback restores settings and images, not membership."""
    now = {node.name: node.role for node in current.hosts}
    then = {node.name: node.role for node in target.hosts}
    problems = []
    added = sorted(set(now) - set(then))
    if added:
        problems.append(
            f"{', '.join(added)} joined after run {run_id}: remove them first (raydeploy remove-node), or roll back "
            "to a later run"
        )
    gone = sorted(set(then) - set(now))
    if gone:
        problems.append(f"{', '.join(gone)} were in run {run_id} but are not in the inventory now: put them back")
    moved = sorted(name for name in set(now) & set(then) if now[name] != then[name])
    problems += [f"{name} was {then[name]} in run {run_id} and is {now[name]} now" for name in moved]
    return problems
