"""Host names an operator gives (--limit, a host to diagnose), checked against the inventory before any host
is contacted. pyinfra stops with a traceback on a --limit host its inventory lacks, and only after the run
was recorded; a name checked here is refused at once, naming it and listing the names there are."""

from __future__ import annotations

from collections.abc import Iterable

from raydeploy.host_records import inventory_hosts


class UnknownHosts(ValueError):
    """Names that are not KNOWN; the message names them and lists the known ones (the API sends both)."""

    def __init__(
        self, unknown: list[str], known: list[str], kind: str = "host", known_as: str = "the inventory's hosts"
    ):
        self.unknown, self.known = unknown, known
        super().__init__(f"unknown {kind}(s) {', '.join(unknown)}; {known_as} are: {', '.join(known)}")


def check_known(names: Iterable[str], known: Iterable[str], **wording: str) -> None:
    """UnknownHosts when some of NAMES are not in KNOWN (WORDING: its kind and known_as).

    >>> check_known(["worker-1"], {"head", "worker-1"})
    >>> check_known(["worker-9", "head"], {"head", "worker-1"})
    Traceback (most recent call last):
    raydeploy.host_names.UnknownHosts: unknown host(s) worker-9; the inventory's hosts are: head, worker-1
    """
    known = sorted(known)
    unknown = [name for name in dict.fromkeys(names) if name not in known]
    if unknown:
        raise UnknownHosts(unknown, known, **wording)


def check_limit(inventory: str, limit: Iterable[str]) -> None:
    """--limit's hosts against INVENTORY's: UnknownHosts naming the ones it lacks; PlanError when it cannot be read."""
    limit = list(limit)
    if limit:
        check_known(limit, inventory_hosts(inventory))
