"""Files holding secrets: uploaded when their digest differs, never shown in a diff or a log.

`files.put` prints a file's content in `--diff` mode; these files hold tokens and passwords.
"""

from __future__ import annotations

import hashlib
import shlex
from io import BytesIO

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FileUploadCommand
from pyinfra.facts.files import Sha256File


@operation()
def secret_file(dest: str, content: str, mode: str = "600", group: str = "root"):
    """
    Put CONTENT at DEST (owner root, GROUP, MODE) when the file's sha256 differs; the content is never logged.

    + dest: remote path; its directory must exist
    + content: the file's text
    + mode: permissions of the file
    + group: the file's group (a name or a number), for a container user that must read it
    """
    wanted = hashlib.sha256(content.encode()).hexdigest()
    if host.get_fact(Sha256File, path=dest) == wanted:
        host.noop(f"{dest} is up to date")
        return
    yield FileUploadCommand(BytesIO(content.encode()), dest, remote_temp_filename=host.get_temp_filename(dest))
    yield f"chown root:{shlex.quote(group)} {shlex.quote(dest)} && chmod {shlex.quote(mode)} {shlex.quote(dest)}"


def env_file_text(values: dict[str, str]) -> str:
    """A docker --env-file body; values must not hold newlines."""
    for key, value in values.items():
        if "\n" in value:
            raise ValueError(f"environment value of {key} holds a newline")
    return "".join(f"{key}={value}\n" for key, value in sorted(values.items()))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
