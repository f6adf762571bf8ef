"""Facts read once per run and host, and read again only after an operation changed that host.

pyinfra 3 runs a fact's command on every `host.get_fact`. Many of our operations ask the same
host the same question (which containers, which images); on a run that changes nothing, each
host is asked once instead of once per operation, which keeps a no-op run short as hosts are
added. Any operation that ran a command on the host since (a pull, a restart, a cleanup) makes
the next read fresh. Final validation does not use this: it reads the host as it is at the end.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase, Host
from pyinfra.context import ctx_host, ctx_state

_read: dict[tuple[int, str, type, tuple], tuple[int, Any]] = {}


def changes_so_far(current: Host | None = None) -> int:
    """How many operations have run commands on CURRENT (the current host) in this run."""
    state, current = ctx_state.get(), current or ctx_host.get()
    changed = 0
    for op_hash in state.ops[current]:
        meta = state.get_op_data_for_host(current, op_hash).operation_meta
        # An operation that failed part-way may still have changed the host.
        changed += meta.is_complete() and (meta.did_change() or not meta.did_succeed())
    return changed


def fact_since_last_change(fact: type[FactBase], on: Host | None = None, **kwargs: Any) -> Any:
    """FACT on host ON (the current host), asked again only if an operation changed that host since it was
    last asked: an operation on one host may read another's (the head's join wait reads each node's)."""
    current = on or ctx_host.get()
    key = (id(ctx_state.get()), current.name, fact, tuple(sorted(kwargs.items())))
    changes = changes_so_far(current)
    if key in _read and _read[key][0] == changes:
        return _read[key][1]
    value = current.get_fact(fact, **kwargs)
    _read[key] = (changes, value)
    return value


def hosts_changed_by(names: tuple[str, ...]) -> set[str]:
    """The hosts on which an operation named one of NAMES (inside any deploy) has changed something so far.

    For an operation that must know what operations above it did on other hosts, at execution time:
    pyinfra runs each operation on every host before the next, so those above it have finished.
    """
    state, wanted = ctx_state.get(), set(names)
    changed = set()
    for current, operations in state.ops.items():
        for op_hash, data in operations.items():
            named = {name.rpartition(" | ")[2] for name in state.get_op_meta(op_hash).names}
            meta = data.operation_meta
            if named & wanted and meta.is_complete() and (meta.did_change() or not meta.did_succeed()):
                changed.add(current.name)
    return changed
