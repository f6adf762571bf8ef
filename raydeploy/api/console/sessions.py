"""Console sessions and one-time sign-in links, kept in the state database beside the API tokens.

A session is a random cookie value (stored only as its hash) bound to one API token: it lasts
SESSION_TTL_S at most, ends at sign-out, and stops working the moment its token is revoked (every
lookup joins the token's row). Each session has its own CSRF token, sent back in every form.
A sign-in link is a random code (stored as a hash) for one token, usable once within LINK_TTL_S.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from raydeploy.api.tokens import Identity
from raydeploy.state import StateStore

SESSION_TTL_S = 8 * 3600
LINK_TTL_S = 15 * 60
SCHEMA = """
CREATE TABLE IF NOT EXISTS console_sessions (
    hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_sign_in_links (
    hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
"""


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A live session: who it is (the token's identity) and the CSRF token its forms carry."""

    identity: Identity
    csrf: str
    expires_at: float


class Sessions:
    """Sessions and sign-in links of one state database."""

    def __init__(self, store: StateStore):
        self.store = store
        store.db.executescript(SCHEMA)

    def open(self, identity: Identity, ttl_s: float = SESSION_TTL_S) -> str:
        """A new session for IDENTITY's token: the cookie value (never stored), audited."""
        value, now = secrets.token_urlsafe(32), time.time()
        with self.store.transaction() as db:
            db.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO console_sessions VALUES (?, ?, ?, ?, ?)",
                (_hash(value), identity.token_id, secrets.token_urlsafe(24), now, now + ttl_s),
            )
        self.store.audit.append(identity.name, "console signed in", identity.name, role=identity.role)
        return value

    def find(self, value: str | None) -> Session | None:
        """The session of cookie VALUE while it lasts and its token is active; else None."""
        if not value:
            return None
        row = self.store.db.execute(
            "SELECT s.csrf, s.expires_at, t.id, t.name, t.role FROM console_sessions s "
            "JOIN api_tokens t ON t.id = s.token_id WHERE s.hash = ? AND t.revoked_at IS NULL AND s.expires_at > ?",
            (_hash(value), time.time()),
        ).fetchone()
        if row is None:
            return None
        return Session(Identity(row["id"], row["name"], row["role"]), row["csrf"], row["expires_at"])

    def close(self, value: str, identity: Identity) -> None:
        """End the session of cookie VALUE (sign-out), audited."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM console_sessions WHERE hash = ?", (_hash(value),))
        self.store.audit.append(identity.name, "console signed out", identity.name)

    def link(self, token_id: str, ttl_s: float = LINK_TTL_S) -> str:
        """A one-time sign-in code for TOKEN_ID (never stored), valid TTL_S seconds."""
        code, now = secrets.token_urlsafe(32), time.time()
        with self.store.transaction() as db:
            db.execute("DELETE FROM console_sign_in_links WHERE expires_at <= ?", (now,))
            db.execute(
                "INSERT INTO console_sign_in_links (hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (_hash(code), token_id, now, now + ttl_s),
            )
        return code

    def link_identity(self, code: str) -> Identity | None:
        """Whose link CODE is, while it is unused, unexpired and its token active (nothing is used up)."""
        row = self.store.db.execute(
            "SELECT t.id, t.name, t.role FROM console_sign_in_links l JOIN api_tokens t ON t.id = l.token_id "
            "WHERE l.hash = ? AND l.used_at IS NULL AND l.expires_at > ? AND t.revoked_at IS NULL",
            (_hash(code), time.time()),
        ).fetchone()
        return Identity(row["id"], row["name"], row["role"]) if row else None

    def use_link(self, code: str) -> Identity | None:
        """Use link CODE up: its identity, once; None when it is unknown, used, expired or its token revoked."""
        identity = self.link_identity(code)
        if identity is None:
            return None
        with self.store.transaction() as db:
            used = db.execute(
                "UPDATE console_sign_in_links SET used_at = ? WHERE hash = ? AND used_at IS NULL",
                (time.time(), _hash(code)),
            ).rowcount
        return identity if used == 1 else None
