"""API bearer tokens: created once (shown once), stored only as a hash, each with a role; revocable.

Roles are ordered: viewer < operator < approver < admin. Reads need viewer, runs need operator,
approvals need approver. The token's name is the identity the API records (approved_by, audit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from raydeploy.audit import now_utc
from raydeploy.state import StateStore

ROLES = ("viewer", "operator", "approver", "admin")
PREFIX = "rdt_"
SCHEMA = """
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT
);
"""


class TokenError(Exception):
    """A token cannot be created or revoked; the message says why."""


@dataclass(frozen=True)
class Identity:
    token_id: str
    name: str
    role: str

    def has(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, store: StateStore):
        self.store = store
        store.db.executescript(SCHEMA)

    def create(self, name: str, role: str, created_by: str) -> tuple[str, str]:
        """A new token for NAME with ROLE: (its id, the token itself, which is never stored)."""
        name = name.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
            raise TokenError("a token name is 1 to 64 letters, digits, '-', '_', '.' or '@'")
        if role not in ROLES:
            raise TokenError(f"role must be one of: {', '.join(ROLES)}")
        if self.store._rows("SELECT id FROM api_tokens WHERE name=? AND revoked_at IS NULL", (name,)):
            raise TokenError(f"a token named {name} exists; revoke it first")
        token_id, token = secrets.token_hex(6), PREFIX + secrets.token_urlsafe(32)
        with self.store.db:
            self.store.db.execute("DELETE FROM api_tokens WHERE name=? AND revoked_at IS NOT NULL", (name,))
            self.store.db.execute(
                "INSERT INTO api_tokens (id, name, role, hash, created_at, created_by) VALUES (?,?,?,?,?,?)",
                (token_id, name, role, _hash(token), now_utc(), created_by),
            )
        self.store.audit.append(created_by, "api token created", name, token_id=token_id, role=role)
        return token_id, token

    def revoke(self, name_or_id: str, revoked_by: str) -> None:
        rows = self.store._rows(
            "SELECT id, name FROM api_tokens WHERE (id=? OR name=?) AND revoked_at IS NULL", (name_or_id, name_or_id)
        )
        if not rows:
            raise TokenError(f"no active token {name_or_id}; see `raydeploy api token list`")
        with self.store.db:
            self.store.db.execute("UPDATE api_tokens SET revoked_at=? WHERE id=?", (now_utc(), rows[0]["id"]))
        self.store.audit.append(revoked_by, "api token revoked", rows[0]["name"], token_id=rows[0]["id"])

    def list(self) -> list[dict]:
        return self.store._rows(
            "SELECT id, name, role, created_at, created_by, revoked_at FROM api_tokens ORDER BY created_at"
        )

    def active_count(self) -> int:
        return len(self.store._rows("SELECT id FROM api_tokens WHERE revoked_at IS NULL"))

    def identify(self, token: str) -> Identity | None:
        """The identity of TOKEN, or None (unknown or revoked); compared in constant time."""
        wanted = _hash(token)
        for row in self.store._rows("SELECT id, name, role, hash FROM api_tokens WHERE revoked_at IS NULL"):
            if hmac.compare_digest(row["hash"], wanted):
                return Identity(row["id"], row["name"], row["role"])
        return None
