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

    def create(self, name: str, role: str, created_by: str) -> tuple[str, str]:
        """A new token for NAME with ROLE: (its id, the token itself, which is never stored)."""
        name = name.strip()
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_.@" for c in name):
            raise TokenError("a token name is 1 to 64 letters, digits, '-', '_', '.' or '@'")
        if role not in ROLES:
            raise TokenError(f"role must be one of: {', '.join(ROLES)}")
        if self.store.active_tokens(name):
            raise TokenError(f"a token named {name} exists; revoke it first")
        token_id, token = secrets.token_hex(6), PREFIX + secrets.token_urlsafe(32)
        self.store.insert_token(
            {
                "id": token_id,
                "name": name,
                "role": role,
                "hash": _hash(token),
                "created_at": now_utc(),
                "created_by": created_by,
            }
        )
        self.store.audit.append(created_by, "api token created", name, token_id=token_id, role=role)
        return token_id, token

    def revoke(self, name_or_id: str, revoked_by: str) -> None:
        rows = self.store.active_tokens(name_or_id)
        if not rows:
            raise TokenError(f"no active token {name_or_id}; see `raydeploy api token list`")
        self.store.revoke_token(rows[0]["id"])
        self.store.audit.append(revoked_by, "api token revoked", rows[0]["name"], token_id=rows[0]["id"])

    def list(self) -> list[dict]:
        return self.store.tokens()

    def active_count(self) -> int:
        return len(self.store.active_tokens())

    def identify(self, token: str) -> Identity | None:
        """The identity of TOKEN, or None (unknown or revoked); compared in constant time."""
        wanted = _hash(token)
        for row in self.store.active_tokens():
            if hmac.compare_digest(row["hash"], wanted):
                return Identity(row["id"], row["name"], row["role"])
        return None
