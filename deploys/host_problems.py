"""Problems a deploy finds on hosts before it changes anything, reported for every host at once.

pyinfra prepares each host's deploy code in turn and stops the whole run at the first exception,
so a deploy that raised on the first bad host would hide the others. `report` records each host's
problems; once every active host has reported, it raises `HostProblems` if any host has one. The
exception names its hosts (`problems`: host -> [problem]) so that whoever runs pyinfra reads which
hosts failed and why from the exception, not from its message.
"""

from __future__ import annotations

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import DeployError
from pyinfra.context import ctx_state

_found: dict[tuple[int, str], dict[str, list[str]]] = {}


class HostProblems(DeployError):
    """Hosts that cannot take the deploy; nothing was changed on any host."""

    def __init__(self, what: str, problems: dict[str, list[str]], checked: int):
        self.problems = problems
        lines = [f"{name}: {problem}" for name, found in sorted(problems.items()) for problem in found]
        super().__init__(
            f"{what} failed on {len(problems)} of {checked} hosts, nothing was changed:\n" + "\n".join(lines)
        )


def report(what: str, problems: list[str]) -> None:
    """Record this host's PROBLEMS for WHAT; after the last active host, raise HostProblems if any host has one."""
    found = _found.setdefault((id(ctx_state.get()), what), {})
    found[host.name] = problems
    for problem in problems:
        host.log(f"{what} failed: {problem}", logger.warning)
    active = {member.name for member in inventory.get_active_hosts()}
    if active <= set(found):
        failed = {name: listed for name, listed in found.items() if listed}
        if failed:
            raise HostProblems(what, failed, len(found))
