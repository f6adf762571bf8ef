"""Hosts the state remembers (deployed by a run, removed by remove-node, torn down by destroy) against the
inventory now.

A host that was deployed and has left the inventory still runs raydeploy's containers: `status` and
`plan` name it and the command that removes it. A host removed and still in the inventory would be
deployed again by the next `raydeploy deploy`: they say that too. A host destroy tore down runs
nothing of raydeploy's: it may leave the inventory, and nothing is said of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raydeploy.node_actions import REMOVE_HOSTS
from raydeploy.plans import PlanError


def host_notices(records: list[dict[str, Any]], inventory_hosts: set[str], inventory: str) -> list[str]:
    """One line per remembered host that disagrees with the inventory, saying what to do."""
    notices = []
    for record in records:
        name, status = record["name"], record["status"]
        if status == "deployed" and name not in inventory_hosts:
            notices.append(
                f"{name} was deployed (run {record['run_id']}) and is no longer in the inventory: its containers "
                f"still run there. Put it back in group 'workers' and run: raydeploy remove-node {name} -i {inventory}"
            )
        elif status == "removed" and name in inventory_hosts:
            notices.append(
                f"{name} was removed by remove-node (run {record['run_id']}) and is still in the inventory: delete "
                f"it from {inventory}, or the next `raydeploy deploy` deploys it again"
            )
    return notices


def inventory_notices(inventory: str, records: list[dict[str, Any]]) -> list[str]:
    """host_notices of RECORDS against INVENTORY's hosts now: what `status`, `plan` and the API's status and
    plans say. An inventory that cannot be read is a notice of its own; a missing one gives none."""
    if not Path(inventory).is_file():
        return []
    try:
        known = inventory_hosts(inventory)
    except PlanError as problem:
        return [str(problem)]
    return host_notices(records, known, inventory)


def inventory_hosts(inventory: str) -> set[str]:
    """The host names of INVENTORY; PlanError when it cannot be read."""
    from validate.inventory import read_inventory_file

    try:
        members, _groups = read_inventory_file(inventory)
    except (Exception, SystemExit) as error:
        raise PlanError(f"inventory {inventory} cannot be read: {error}") from None
    return {name for name, _data in members}


def hosts_after(
    checkpoint: str, finished_hosts: list[str], data: dict[str, str], failed_hosts: list[str] = ()
) -> tuple[list[str], str] | None:
    """What CHECKPOINT tells about hosts: (names, "deployed" | "removed" | "destroyed"), or None.

    A destroy counts host by host (the others are torn down when one is unreachable): the hosts it
    finished are destroyed, the FAILED_HOSTS keep their record (still deployed). The others count only
    when the whole checkpoint succeeded.
    """
    if checkpoint == "destroy":
        return sorted(set(finished_hosts) - set(failed_hosts)), "destroyed"
    if failed_hosts:
        return None
    if checkpoint == "ray-deployment":
        return finished_hosts, "deployed"
    if checkpoint == "remove-node":
        return [name.strip() for name in data.get(REMOVE_HOSTS, "").split(",") if name.strip()], "removed"
    return None
