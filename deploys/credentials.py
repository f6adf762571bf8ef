"""Secrets the deploy generates once (Redis password, Ray token) and keeps in the state directory.

Each lives in `<state_dir>/secrets/<name>`, mode 0600, made on first use and read afterwards, so a
re-run keeps the same secret. They are never printed or logged; the hosts get them in 0600 files.
"""

from __future__ import annotations

import os
import secrets as random_secrets
from pathlib import Path


def secret(state_dir: str, name: str, nbytes: int = 32) -> str:
    """The secret NAME, generated the first time it is asked for."""
    directory = Path(state_dir) / "secrets"
    path = directory / name
    if path.exists():
        return path.read_text().strip()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = random_secrets.token_urlsafe(nbytes)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another run: use that one
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


def read_secret(state_dir: str, name: str) -> str | None:
    """The secret NAME if it was generated, else None (for readers that must not generate it)."""
    path = Path(state_dir) / "secrets" / name
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
