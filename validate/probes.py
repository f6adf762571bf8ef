"""pyinfra facts read through a testinfra host: validate and the API ask a host exactly what the
deploys ask it, with the fact's own command and parser (facts/ and pyinfra.facts), never a copy."""

from __future__ import annotations

import shlex
from typing import Any

from pyinfra.api import FactBase, ShortFactBase

_as_root: dict[int, bool] = {}


def read_fact(host, fact: type[FactBase] | type[ShortFactBase], **arguments: Any) -> Any:
    """FACT of testinfra HOST: its command run there (as root, through sudo when the SSH user is not)
    and its output processed as pyinfra would; the fact's default when the command fails."""
    short = fact() if issubclass(fact, ShortFactBase) else None
    base = fact.fact() if short is not None else fact()
    command = base.command(**arguments)
    needs = base.requires_command(**arguments) if callable(base.requires_command) else base.requires_command
    if needs:
        command = f"! command -v {shlex.quote(needs)} >/dev/null || ( {command} )"
    if not _is_root(host):
        command = f"sudo -n sh -c {shlex.quote(command)}"
    result = host.run(command)
    data = base.process(result.stdout.splitlines()) if result.rc == 0 and result.stdout.strip() else base.default()
    return short.process_data(data) if short is not None else data


def _is_root(host) -> bool:
    if id(host) not in _as_root:
        _as_root[id(host)] = host.run("id -u").stdout.strip() == "0"
    return _as_root[id(host)]
