"""A file that holds a secret, as the deploy must know it: its content digest, mode and numeric owner."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


def file_state(output: list[str]) -> dict | None:
    """`stat -c '%a %u %g'` then `sha256sum` of one file, read into data; None when it is absent.

    .. code:: python

        {"mode": "600", "uid": 999, "gid": 0, "sha256": "9f86d08..."}
    """
    if len(output) != 2:
        return None
    mode, uid, gid = output[0].split()
    return {"mode": mode, "uid": int(uid), "gid": int(gid), "sha256": output[1].split()[0]}


class SecretFileState(FactBase):
    """
    Mode (octal text, as `stat %a` gives it), numeric owner and group, and sha256 of the file at PATH;
    None when there is no such file. Numeric ids: a container's user often has no name on the host.
    """

    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return f"! test -f {quoted} || {{ stat -c '%a %u %g' {quoted} && sha256sum {quoted}; }}"

    def process(self, output: list[str]) -> dict | None:
        return file_state(output)
