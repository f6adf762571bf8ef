"""Tearing a cluster down: the destroy action's arguments, the name typed back to approve it, and
forgetting the control host's secrets once the hosts are clean. The CLI and the API both call this.

What goes on the hosts is decided on the hosts (deploys/teardown.py); this module only starts the
destroy action through the runner (plan, approval, lock, record, audit) and, with forget_secrets,
removes `<state_dir>/secrets` after a destroy that succeeded on every host.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from raydeploy import runner
from raydeploy.state import Lock, StateStore

ACTION = "destroy"


def destroy_data(purge_data: bool, forget_secrets: bool) -> dict[str, str]:
    """The action's arguments as host data; only the ones given, so a plain destroy's plan carries none.

    Both are part of the plan's digest: an approval for a destroy that keeps data or secrets does
    not let one run that removes them.

    >>> destroy_data(purge_data=True, forget_secrets=False)
    {'purge_data': 'true'}
    """
    data = {}
    if purge_data:
        data["purge_data"] = "true"
    if forget_secrets:
        data["forget_secrets"] = "true"
    return data


def rerun_command(inventory: str, data: dict[str, str]) -> str:
    """The command that finishes a destroy that some hosts missed (it finds on them what is left)."""
    flags = "".join(f" --{key.replace('_', '-')}" for key in sorted(data))
    return f"raydeploy destroy -i {inventory}{flags}"


@dataclass(frozen=True)
class ClusterIdentity:
    name: str  # typed back at the terminal to approve
    secrets_dir: Path  # where the deploys keep the generated secrets on this machine


def cluster_identity(inventory: str, state_dir: Path) -> ClusterIdentity:
    """The cluster's name (the head's cluster_name) and its secrets' directory, from the inventory."""
    from validate.inventory import load

    head = load(inventory, str(state_dir)).cluster.head.settings
    return ClusterIdentity(head.cluster_name, Path(head.state_dir) / "secrets")


def forget_secrets(store: StateStore, secrets_dir: Path, who: str, run_id: str) -> list[str]:
    """Remove the generated secrets in SECRETS_DIR (audited, names only); the names removed. The secrets
    the operator put there (Alertmanager's receivers: deploys/host_secrets.py) are theirs, not the
    cluster's, and stay: no deploy could make them again."""
    from deploys.host_secrets import ALERT_SECRETS

    if not secrets_dir.is_dir():
        return []
    generated = sorted(path for path in secrets_dir.iterdir() if path.name not in ALERT_SECRETS.values())
    for path in generated:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if not any(secrets_dir.iterdir()):
        secrets_dir.rmdir()
    removed = [path.name for path in generated]
    store.audit.append(who, "secrets forgotten", str(secrets_dir), run_id=run_id, secrets=removed)
    return removed


def run_destroy(options: runner.RunOptions, lock: Lock | None = None) -> str:
    """Run the destroy action (OPTIONS.data holds its arguments); forget the secrets after success.

    Raises runner.RunStopped as any run does: 3 awaiting approval, 1 when a host failed or was
    unreachable (its name and the re-run command in the message; the secrets are then kept).
    """
    if options.interactive and not options.typed_confirmation:  # never with LOCK (the API's runs are not)
        options.typed_confirmation = cluster_identity(options.inventory, options.store.directory).name
    options.rerun_command = options.rerun_command or rerun_command(options.inventory, options.data)
    forgetting = options.data.get("forget_secrets") == "true"
    try:
        run_id = runner.deploy(options, lock)
    except runner.RunStopped as stopped:
        if forgetting:  # a host may still run the cluster: the re-run needs the same secrets
            secrets_dir = cluster_identity(options.inventory, options.store.directory).secrets_dir
            stopped.message += f"\nthe secrets in {secrets_dir} are kept: they go once a destroy succeeds on every host"
        raise
    if forgetting:
        identity = cluster_identity(options.inventory, options.store.directory)
        removed = forget_secrets(options.store, identity.secrets_dir, options.requested_by, run_id)
        options.echo(f"secrets forgotten in {identity.secrets_dir}: {', '.join(removed) or 'none were there'}")
    return run_id


def destroy_options(
    inventory: str,
    store: StateStore,
    requested_by: str,
    command: str,
    data: dict[str, str],
    **others: object,
) -> runner.RunOptions:
    """RunOptions of a destroy run with DATA (destroy_data) as its arguments."""
    return runner.RunOptions(
        inventory=inventory,
        store=store,
        checkpoints=[ACTION],
        requested_by=requested_by,
        command=command,
        data=data,
        **others,  # type: ignore[arg-type]
    )
