"""Changes that interrupt the whole cluster, said by the deploy that plans them, as data.

A plain ray-deployment needs no approval; one that restarts every Ray node at once (a new Ray
release) does. The deploy that finds such a change calls `disruptive()` while it is prepared: the
wrapper's pyinfra session (raydeploy/pyinfra_session.py) puts what it recorded into the plan, per
host, where the plan's digest covers it and the runner asks for an approval with the risks
acknowledged; plain `pyinfra` shows it as a warning.
"""

from __future__ import annotations

from pyinfra import host, logger

# host name -> what the deploys said while this process prepared them (the session reads it)
RECORDED: dict[str, list[dict[str, str]]] = {}


def disruptive(kind: str, summary: str) -> None:
    """Record that the current host's plan disrupts the cluster: KIND (e.g. "cluster-restart"), and
    SUMMARY, the words a person approves ("cluster-wide restart: Ray 2.59.0 -> 2.60.0 on 3 nodes ...")."""
    entry = {"kind": kind, "summary": summary}
    if entry not in RECORDED.setdefault(host.name, []):
        RECORDED[host.name].append(entry)
    host.log(f"DISRUPTIVE: {summary}", logger.warning)
