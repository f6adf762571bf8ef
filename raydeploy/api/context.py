"""What every request is served from (the inventory, the state directory, the rules), and who is asking.

Authentication and authorisation are dependencies: `Viewer`, `Operator`, `Approver`, `Admin`
each give the caller's identity or answer 401/403, both recorded in the audit trail (without the
token). A failed authentication is throttled per client address and recorded once per burst
(raydeploy.api.failed_auth). Each token has a request rate limit: a moving window kept by the
`limits` library (the one slowapi is built on; slowapi itself keys requests before authentication,
so a forged token would be counted and a revoked one answered 429 instead of 401, and it needs a
`request` argument on every route). Only an authenticated token is counted, and a 429 says when to
retry. A token also holds a bounded number of open log streams.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi import Path as PathParameter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from raydeploy.api.errors import ApiError
from raydeploy.api.failed_auth import DEFAULT_LIMIT, MAX_PATH_CHARS, FailedAuth, request_text
from raydeploy.api.tokens import Identity, TokenStore
from raydeploy.checkpoints import ACTION_NAMES, NAMES, check_arguments, get
from raydeploy.plans import Plan, PlanError, make_plan
from raydeploy.state import StateStore

RATE_WINDOW_S = 60
DEFAULT_RATE_LIMIT = 120  # requests per token per RATE_WINDOW_S
# Log streams one token may hold open at once: each lives as long as its run and polls the state, so
# the request rate alone would let a viewer pile up thousands over a long run.
MAX_STREAMS_PER_TOKEN = 8
STREAM_RETRY_S = 15


def plan_key(name: str, data: dict[str, str] | None = None) -> str:
    """Where Service.latest_plans keeps NAME's plan for DATA: a checkpoint's under its name alone.

    >>> plan_key("destroy", {"purge_data": "true"}), plan_key("ray-deployment")
    ('destroy?purge_data=true', 'ray-deployment')
    """
    return name + "".join(
        f"{'?' if index == 0 else '&'}{key}={value}" for index, (key, value) in enumerate(sorted((data or {}).items()))
    )


class Service:
    """The served inventory and state directory, the rules, and the per-process caches."""

    def __init__(
        self,
        inventory: str,
        state_dir: Path,
        separation_of_duties: bool = True,
        rate_limit: int | None = None,
        failed_auth_limit: int | None = None,
    ):
        self.inventory, self.state_dir = inventory, Path(state_dir)
        self.separation_of_duties = separation_of_duties
        self.rate_limit = rate_limit or DEFAULT_RATE_LIMIT
        self.failed_auth = FailedAuth(failed_auth_limit or DEFAULT_LIMIT)
        self._local = threading.local()
        self._rate = RateLimitItemPerSecond(self.rate_limit, RATE_WINDOW_S)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._streams: dict[str, weakref.WeakSet] = {}
        self._streams_lock = threading.Lock()
        self.health_cache: dict = {"at": 0.0, "value": None}
        # The newest plan made here of each checkpoint, and of each action per arguments (plan_key): (when, plan).
        # What the dashboard says a checkpoint would do, and what a console page shows at once, without a dry run.
        self.latest_plans: dict[str, tuple[float, Plan]] = {}
        self.health_lock = threading.Lock()

    def db(self) -> StateStore:
        """This thread's connection to the state (SQLite connections are not shared between threads)."""
        if getattr(self._local, "store", None) is None:
            self._local.store = StateStore(self.state_dir)
            self._local.tokens = TokenStore(self._local.store)
        return self._local.store

    def tokens(self) -> TokenStore:
        self.db()
        return self._local.tokens

    def within_rate(self, token_id: str) -> bool:
        """Count a request of TOKEN_ID; False when it has made rate_limit requests in the last RATE_WINDOW_S."""
        return self._limiter.hit(self._rate, token_id)

    def retry_after_s(self, token_id: str) -> int:
        """Whole seconds until TOKEN_ID may make a request again (at least 1)."""
        reset_at = self._limiter.get_window_stats(self._rate, token_id).reset_time
        return max(1, math.ceil(reset_at - time.time()))

    def counted_stream(self, token_id: str, events: AsyncIterator) -> AsyncIterator:
        """EVENTS (an async generator), counted among TOKEN_ID's open streams; 429 when it holds
        MAX_STREAMS_PER_TOKEN. A stream counts until it ends or is dropped (weakly held: none can leak)."""
        with self._streams_lock:
            held = self._streams.setdefault(token_id, weakref.WeakSet())
            if sum(1 for stream in held if stream.ag_frame is not None) >= MAX_STREAMS_PER_TOKEN:
                raise ApiError(
                    429,
                    "TOO_MANY_STREAMS",
                    f"this token holds {MAX_STREAMS_PER_TOKEN} open log streams; close one, or retry in "
                    f"{STREAM_RETRY_S} s",
                    {"retry_after_s": STREAM_RETRY_S},
                    headers={"Retry-After": str(STREAM_RETRY_S)},
                )
            held.add(events)
        return events

    def plan(self, name: str, data: dict[str, str] | None = None) -> Plan:
        """CHECKPOINT's plan now (pyinfra's dry run; an action's with DATA, its arguments); 503 PLAN_FAILED
        with pyinfra's words when it cannot plan; 400 INVALID_REQUEST for an argument NAME does not take."""
        try:
            check_arguments(name, data or {})
        except ValueError as problem:
            raise ApiError(400, "INVALID_REQUEST", str(problem), {"checkpoint": name}) from None
        self.refuse_removal(name, data or {})
        try:
            plan = make_plan(self.inventory, get(name), self.state_dir, data=data or None)
        except PlanError as error:
            raise ApiError(503, "PLAN_FAILED", str(error)[:4000], {"checkpoint": name}) from None
        self.latest_plans[plan_key(name, data)] = (time.time(), plan)
        return plan

    def refuse_removal(self, name: str, data: dict[str, str]) -> None:
        """400 INVALID_REQUEST when the inventory already says remove-node cannot remove DATA's hosts (unknown,
        the head, the monitoring host), before any host is contacted; 503 INVENTORY_UNREADABLE."""
        from raydeploy.node_actions import removal_refusals
        from validate.inventory import InventoryError

        try:
            problems = removal_refusals(self.inventory, name, data)
        except InventoryError as error:
            raise ApiError(503, "INVENTORY_UNREADABLE", str(error)) from None
        if problems:
            message = "remove-node refused, nothing was changed: " + "; ".join(problems)
            raise ApiError(400, "INVALID_REQUEST", message, {"checkpoint": name, "problems": problems})

    def notices(self) -> list[str]:
        """What the state remembers of hosts that the inventory now contradicts (raydeploy/host_records.py)."""
        from raydeploy.host_records import inventory_notices

        return inventory_notices(self.inventory, self.db().hosts())

    def loaded(self):
        """The inventory, read as pyinfra reads it; 503 INVENTORY_UNREADABLE when it cannot be."""
        from validate.inventory import InventoryError, load

        try:
            return load(self.inventory)
        except InventoryError as error:
            raise ApiError(503, "INVENTORY_UNREADABLE", str(error)) from None


def query_data(items: list[str] | None) -> dict[str, str]:
    """`?with=KEY=VALUE` query items as a day-2 action's arguments; 400 INVALID_REQUEST naming a bad one."""
    data = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise ApiError(400, "INVALID_REQUEST", f"with={item[:200]!r} is not KEY=VALUE (e.g. with=purge_data=true)")
        data[key.strip()] = value
    return data


ActionData = Annotated[
    list[str] | None,
    Query(
        alias="with",
        description="A day-2 action's arguments, KEY=VALUE, repeatable (destroy: with=purge_data=true)",
        examples=[["purge_data=true"]],
    ),
]


CheckpointName = Annotated[str, PathParameter(description="A checkpoint's name", examples=["cleanup-existing"])]


def known_checkpoint(name: str) -> str:
    if name not in NAMES:
        raise ApiError(404, "NOT_FOUND", f"unknown checkpoint {name[:80]!r}", {"valid": list(NAMES)})
    return name


def known_checkpoint_or_action(name: str) -> str:
    """NAME when it is a checkpoint or a day-2 action (both are approved the same way); else 404."""
    if name not in NAMES + ACTION_NAMES:
        raise ApiError(404, "NOT_FOUND", f"unknown checkpoint {name[:80]!r}", {"valid": list(NAMES + ACTION_NAMES)})
    return name


def service(request: Request) -> Service:
    return request.app.state.service


Served = Annotated[Service, Depends(service)]


# Declares the scheme in the OpenAPI document (and /docs' Authorize button); identify() judges the token.
BEARER = HTTPBearer(auto_error=False, description="An API token: raydeploy api token create --name NAME --role ROLE")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def identify(request: Request, served: Served, credentials: Credentials) -> Identity:
    token = credentials.credentials.strip() if credentials else ""
    identity = served.tokens().identify(token) if token else None
    if identity is None:
        header = request.headers.get("authorization")
        unauthenticated(request, served, "no token" if not header else "unknown or revoked token")
    refuse_over_rate(served, identity.token_id)
    return identity


def refuse_over_rate(served: Served, token_id: str) -> None:
    """429 with Retry-After once TOKEN_ID has made more requests than the rate limit allows in its window."""
    if not served.within_rate(token_id):
        wait = served.retry_after_s(token_id)
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"more than {served.rate_limit} requests in {RATE_WINDOW_S} s; retry in {wait} s",
            {"retry_after_s": wait},
            headers={"Retry-After": str(wait)},
        )


def unauthenticated(request: Request, served: Served, reason: str) -> None:
    """401 with RFC 6750's challenge, or 429 once the client's address has failed too often; audited per burst."""
    client = request.client.host if request.client else "unknown"
    wait = served.failed_auth.failed(served.db(), client, reason, request.url.path, request.headers.get("user-agent"))
    if wait is not None:
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"more than {served.failed_auth.limit} failed authentications from {client} in "
            f"{served.failed_auth.window_s} s; retry in {wait} s",
            {"retry_after_s": wait},
            headers={"Retry-After": str(wait)},
        )
    challenge = 'Bearer realm="raydeploy"' + ("" if reason == "no token" else ', error="invalid_token"')
    raise ApiError(
        401,
        "UNAUTHORIZED",
        "a valid bearer token is required (raydeploy api token create)",
        headers={"WWW-Authenticate": challenge},
    )


def refuse(
    served: Service, identity: Identity, path: str, message: str, error: str = "FORBIDDEN", **details
) -> ApiError:
    """A 403 for IDENTITY on PATH, recorded in the audit trail."""
    target = request_text(path, MAX_PATH_CHARS)
    served.db().audit.append(
        identity.name, "api authorisation refused", target, role=identity.role, why=error, **details
    )
    return ApiError(403, error, message, details)


def require(role: str):
    def check(request: Request, served: Served, identity: Annotated[Identity, Depends(identify)]) -> Identity:
        if not identity.has(role):
            raise refuse(
                served,
                identity,
                request.url.path,
                f"this needs the {role} role; the token {identity.name} is {identity.role}",
                needs=role,
            )
        return identity

    return check


Viewer = Annotated[Identity, Depends(require("viewer"))]
Operator = Annotated[Identity, Depends(require("operator"))]
Approver = Annotated[Identity, Depends(require("approver"))]
Admin = Annotated[Identity, Depends(require("admin"))]
