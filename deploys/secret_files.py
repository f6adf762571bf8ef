"""Files holding secrets: 0600, owned by the one user that reads them, never shown in a diff or a log.

`files.put` prints a file's content in `--diff` mode; these files hold tokens and passwords. A file
mounted read-only into a container must be readable by the container's user, so its owner is that
user's uid (root, 0, for a container that runs as root); nobody else may read it.
"""

from __future__ import annotations

import hashlib
import shlex
from io import BytesIO

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FileUploadCommand

from facts.secret_files import SecretFileState

SECRET_MODE = "600"


def secret_file_changes(current: dict | None, wanted_sha256: str, owner: int) -> tuple[bool, bool]:
    """(upload the content, fix mode and owner) for a file found as CURRENT (SecretFileState)."""
    upload = current is None or current["sha256"] != wanted_sha256
    settled = current is not None and (current["mode"], current["uid"], current["gid"]) == (SECRET_MODE, owner, 0)
    return upload, upload or not settled


@operation()
def secret_file(dest: str, content: str, owner: int = 0):
    """
    Put CONTENT at DEST, mode 0600, owned by uid OWNER and group root; the content is never logged.

    + dest: remote path; its directory must exist (and be 0700 root: the upload lands before the chmod)
    + content: the file's text
    + owner: the uid that reads it (a container's user); 0 for root

    A file with the right content but another mode or owner (as an earlier version left it) is only
    chmod-ed and chown-ed.

    **Example:**

    .. code:: python

        secret_file(name="Redis config", dest="/etc/raydeploy/redis.conf", content=text, owner=999)
    """
    upload, fix = secret_file_changes(host.get_fact(SecretFileState, path=dest), sha256(content), owner)
    if not fix:
        host.noop(f"{dest} is up to date")
        return
    if upload:
        yield FileUploadCommand(BytesIO(content.encode()), dest, remote_temp_filename=host.get_temp_filename(dest))
    yield f"chown {int(owner)}:0 {shlex.quote(dest)} && chmod {SECRET_MODE} {shlex.quote(dest)}"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def digest(text: str) -> str:
    return sha256(text)[:16]
