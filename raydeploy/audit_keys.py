"""Where an audit trail's key lives: one file per trail, in a key directory apart from the state directory.

The key directory is `$RAYDEPLOY_AUDIT_KEY_DIR`, else `$XDG_CONFIG_HOME/raydeploy/audit-keys/` (XDG's
default: `~/.config`). A trail's key file is `<trail id>.key`, 0600, JSON: the trail's id, 32 random bytes
(hex) and the state directory it was made for. Beside it, `<trail id>.head` holds the trail's newest
event's number and hash, out of reach of whoever can write only the state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

TRAIL_ID = re.compile(r"[0-9a-f]{32}")


class AuditKeyError(Exception):
    """The trail's key is missing or cannot be made; the message names the path and what to do."""


def key_directory() -> Path:
    configured = os.environ.get("RAYDEPLOY_AUDIT_KEY_DIR")
    if configured:
        return Path(configured)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "raydeploy" / "audit-keys"


@dataclass(frozen=True)
class TrailKey:
    """The key file of trail TRAIL_ID (as the state database names it: a forged id finds no key)."""

    trail_id: str

    @property
    def path(self) -> Path:
        # Never a path an edited id names ("../mine"): it could lead to a key of the editor's making.
        name = self.trail_id if TRAIL_ID.fullmatch(self.trail_id) else "(not a trail id)"
        return key_directory() / f"{name}.key"

    @property
    def head_file(self) -> Path:
        return self.path.with_suffix(".head")

    def read(self) -> bytes | None:
        """The key; None when the file is missing or unreadable."""
        try:
            return bytes.fromhex(json.loads(self.path.read_text())["key"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def missing(self) -> str:
        return (
            f"the audit trail's key (trail {self.trail_id}) is not at {self.path}: restore that file from your "
            f"backup of {key_directory()} (or point RAYDEPLOY_AUDIT_KEY_DIR at the directory that holds it); "
            "until then the trail can be neither checked nor added to"
        )

    def write_head(self, seq: int, digest: str) -> None:
        try:
            write_head(self.head_file, seq, digest)
        except OSError as error:
            raise AuditKeyError(
                f"cannot write {self.head_file} ({error.strerror}): the audit key directory {key_directory()} must "
                "be writable by whoever runs raydeploy (the newest event's hash is kept beside the key)"
            ) from None


def create_key(state_dir: Path) -> TrailKey:
    """A new trail id and its key file (0600, in a 0700 directory when this makes it), for STATE_DIR."""
    directory = key_directory()
    trail = TrailKey(secrets.token_hex(16))
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(trail.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"trail": trail.trail_id, "key": secrets.token_hex(32), "state_dir": str(state_dir)}, file)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise AuditKeyError(
            f"cannot make the audit trail's key in {directory} ({error.strerror}): set RAYDEPLOY_AUDIT_KEY_DIR to a "
            "directory you can write, kept apart from the state directory"
        ) from None
    return trail


def trails_made_for(state_dir: Path) -> list[str]:
    """Ids of the key files made for STATE_DIR (evidence of a keyed trail that was there before)."""
    found = []
    for path in sorted(key_directory().glob("*.key")):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            data = json.loads(path.read_text())
            if data.get("state_dir") == str(state_dir):
                found.append(str(data.get("trail")))
    return found


def write_head(path: Path, seq: int, digest: str) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temporary.write_text(f"{seq} {digest}\n")
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def read_head(path: Path) -> tuple[int, str] | None:
    """(seq, hash) recorded in PATH; None when there is none. A malformed head reads as seq -1."""
    try:
        seq, _, digest = path.read_text().strip().partition(" ")
    except FileNotFoundError:
        return None
    return (int(seq), digest) if seq.isdigit() else (-1, digest)
