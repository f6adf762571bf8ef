"""Showing a generated secret to someone allowed to have it: read from the cluster's state directory, audited.

The Ray dashboard asks for the cluster's token (ray_auth_mode token); Grafana for its admin password.
`raydeploy secrets show NAME` and the console's admin page both call `reveal`, so each showing is one
audit event naming who, the secret's name and the way it was shown (never the value).
"""

from __future__ import annotations

from raydeploy.state import StateStore

SHOWABLE = ("ray-auth-token", "grafana-admin-password", "redis-password")


class SecretUnavailable(Exception):
    """The secret cannot be shown; the message says why and what to do."""


def reveal(inventory: str, store: StateStore, name: str, actor: str, via: str) -> str:
    """Secret NAME of INVENTORY's cluster (the head's state directory, or STORE's), shown to ACTOR VIA a way; audited."""
    from deploys.credentials import read_secret
    from validate.inventory import InventoryError, load

    if name not in SHOWABLE:
        raise SecretUnavailable(f"{name!r} is not a secret raydeploy shows; it shows {', '.join(SHOWABLE)}")
    try:
        state_dir = load(inventory, str(store.directory)).cluster.head.settings.state_dir
    except InventoryError as error:
        raise SecretUnavailable(str(error)) from None
    value = read_secret(state_dir, name)
    if value is None:
        raise SecretUnavailable(
            f"{name} has not been generated in {state_dir}/secrets yet: deploy the cluster first "
            "(raydeploy deploy, or pyinfra ... deploys/ray.py)"
        )
    store.audit.append(actor, "secret shown", name, via=via)
    return value
