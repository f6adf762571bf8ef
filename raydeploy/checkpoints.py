"""The six checkpoints, in order: names and flags as the product this replaces had them.

The one registry the wrapper, the API and validation read; each checkpoint is a pyinfra deploy
file in deploys/ (deploys/ray.py runs them all).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Checkpoint:
    name: str
    description: str
    approval_required: bool
    destructive: bool
    arguments: tuple[str, ...] = ()  # a day-2 action's --with KEY=VALUE keys (host data)
    # Its plan may disrupt the whole cluster (deploys/disruptions.py): it is always planned, and such a
    # plan needs an approval with the risks acknowledged although the checkpoint otherwise needs none.
    may_disrupt: bool = False

    @property
    def deploy_file(self) -> str:
        return f"deploys/{self.name}.py"


CHECKPOINTS = (
    Checkpoint(
        "prerequisites-check", "OS, CPUs, memory, disk, shm, free ports, head reachable; changes nothing", False, False
    ),
    Checkpoint("docker-installation", "Docker engine, daemon.json, service enabled", True, False),
    Checkpoint(
        "cleanup-existing", "Remove earlier Ray containers/processes and stale monitoring containers", True, True
    ),
    Checkpoint(
        "ray-deployment",
        "Redis, the Ray head and workers; waits until every node is alive. A new Ray release restarts every "
        "node together: that plan needs an approval",
        False,
        False,
        may_disrupt=True,
    ),
    Checkpoint("monitoring-deployment", "node-exporter, cAdvisor, Prometheus with alert rules, Grafana", False, False),
    Checkpoint("final-validation", "testinfra, HTTP and a Ray job that must run on every node", False, False),
)
NAMES = tuple(checkpoint.name for checkpoint in CHECKPOINTS)
# Day-2 actions: planned, approved (with the risks acknowledged), run, recorded and audited as a
# checkpoint is, but never part of `raydeploy deploy`; their arguments reach the deploy file as host
# data (RunOptions.data), which the plan carries, so an approval binds them too.
ACTIONS = (
    Checkpoint(
        "remove-node",
        "Drain the named nodes through Ray, then remove raydeploy's containers there and stop scraping them",
        True,
        True,
        ("remove_hosts", "drain_timeout", "remove_on_drain_timeout"),
    ),
    Checkpoint(
        "destroy",
        "Remove raydeploy's containers, and with --purge-data its data, from every host; Docker stays",
        True,
        True,
        ("purge_data", "forget_secrets"),
    ),
    Checkpoint(
        "rollback",
        "Go back to the images and settings a successful run recorded (ray-deployment and monitoring-deployment "
        "with them); a change of Ray release needs an approval",
        False,
        False,
        ("rollback_to",),
        may_disrupt=True,
    ),
)
ACTION_NAMES = tuple(action.name for action in ACTIONS)
BY_NAME = {checkpoint.name: checkpoint for checkpoint in CHECKPOINTS + ACTIONS}


def needs_approval(checkpoint: Checkpoint, plan) -> bool:
    """Whether running PLAN of CHECKPOINT needs an approval: the checkpoint always does, or this plan
    disrupts the cluster (a Plan, or None when none was made)."""
    return checkpoint.approval_required or (checkpoint.may_disrupt and plan is not None and plan.disruptive)


def needs_risk_acknowledgement(checkpoint: Checkpoint, plan) -> bool:
    """Whether an approval of PLAN must acknowledge its risks: a destructive checkpoint, or a disruptive plan."""
    return checkpoint.destructive or (plan is not None and plan.disruptive)


def risky(checkpoint: Checkpoint) -> str:
    """Why an approval must acknowledge risks, in a word: destructive, or disruptive (a plan that restarts the cluster)."""
    return "destructive" if checkpoint.destructive else "disruptive"


def what_to_approve(checkpoint: Checkpoint) -> str:
    return "destructive checkpoint" if checkpoint.destructive else "disruptive plan"


def check_arguments(name: str, data: dict[str, str]) -> None:
    """ValueError naming the keys of DATA that NAME does not take, and the ones it does.

    >>> check_arguments("destroy", {"purge_data": "true"})
    >>> check_arguments("destroy", {"purge": "true"})
    Traceback (most recent call last):
    ValueError: destroy takes no argument purge; its arguments are purge_data, forget_secrets
    """
    unknown = sorted(set(data) - set(BY_NAME[name].arguments))
    if not unknown:
        return
    if not BY_NAME[name].arguments:
        raise ValueError(f"{name} takes no arguments (those are for the day-2 actions: {', '.join(ACTION_NAMES)})")
    raise ValueError(
        f"{name} takes no argument {', '.join(unknown)}; its arguments are {', '.join(BY_NAME[name].arguments)}"
    )


class UnknownCheckpoint(KeyError):
    def __str__(self) -> str:
        return f"unknown checkpoint {self.args[0]!r}; the checkpoints are: {', '.join(NAMES)}"


def get(name: str) -> Checkpoint:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownCheckpoint(name) from None
