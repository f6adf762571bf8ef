"""Who is asking, and what they may do: the session behind the cookie, CSRF tokens, roles, security headers.

Roles are checked by the API's own `require(role)` (raydeploy.api.context): the same rule, the same 403,
the same audit event. A state-changing request must carry its session's CSRF token in the form (field
`csrf`); the cookie alone is never enough. Every console answer carries a strict Content-Security-Policy.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from raydeploy.api.console.rendering import error_page
from raydeploy.api.console.sessions import Session, Sessions
from raydeploy.api.context import Served, Service, refuse, refuse_over_rate, require
from raydeploy.api.errors import ApiError, invalid_request
from raydeploy.api.tokens import Identity

COOKIE = "raydeploy_session"
PRE_SIGN_IN_COOKIE = "raydeploy_sign_in"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # a sign-in link's code never leaves in a Referer
    "Cache-Control": "no-store",
}
# The API's own documents load Swagger UI and ReDoc from their CDN: their pages keep FastAPI's headers.
UNGUARDED = ("/docs", "/redoc", "/openapi.json")


class SignInNeeded(Exception):
    """No live session: a page sends the browser to sign in; a live part or a form is answered 401."""


@dataclass(frozen=True)
class Visitor:
    """A signed-in person: their token's identity, their session's CSRF token and cookie value."""

    identity: Identity
    csrf: str
    cookie: str

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def role(self) -> str:
        return self.identity.role

    def can(self, role: str) -> bool:
        return self.identity.has(role)


_local = threading.local()


def sessions(served: Service) -> Sessions:
    """This thread's sessions over its connection to the state database (SQLite's are per thread)."""
    store = served.db()
    if getattr(_local, "sessions", None) is None or _local.sessions.store is not store:
        _local.sessions = Sessions(store)
    return _local.sessions


def signed_in(request: Request, served: Served) -> Visitor:
    """The visitor behind the session cookie, counted against their token's rate limit; SignInNeeded without one."""
    cookie = request.cookies.get(COOKIE, "")
    found: Session | None = sessions(served).find(cookie)
    if found is None:
        raise SignInNeeded()
    refuse_over_rate(served, found.identity.token_id)
    return Visitor(found.identity, found.csrf, cookie)


SignedIn = Annotated[Visitor, Depends(signed_in)]


def allowed(role: str, request: Request, served: Service, visitor: Visitor) -> Identity:
    """VISITOR's identity when it has ROLE; else the API's own 403, audited (raydeploy.api.context.require)."""
    return require(role)(request, served, visitor.identity)


async def form_fields(request: Request) -> dict[str, str]:
    """The request's urlencoded form (the last value of each field)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=50))
    except ValueError:
        raise ApiError(422, "INVALID_REQUEST", "a console form has at most 50 fields") from None


Form = Annotated[dict[str, str], Depends(form_fields)]


def check_csrf(request: Request, served: Service, visitor: Visitor, form: dict[str, str]) -> None:
    """403 CSRF_FAILED (audited) unless FORM carries VISITOR's session CSRF token."""
    if not hmac.compare_digest(form.get("csrf", "").encode(), visitor.csrf.encode()):
        raise refuse(
            served,
            visitor.identity,
            request.url.path,
            "this form is not from your current session (it is old, or from another site); reload the page and "
            "send it again",
            "CSRF_FAILED",
        )


def acting(role: str) -> Callable:
    """A dependency for a state-changing request: a signed-in visitor, their CSRF token checked, holding ROLE."""

    def check(request: Request, served: Served, visitor: SignedIn, form: Form) -> Visitor:
        check_csrf(request, served, visitor, form)
        allowed(role, request, served, visitor)
        return visitor

    return check


def local_path(target: str | None) -> str:
    """TARGET when it is a path on this server, else / (no open redirect after sign-in)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def new_pre_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def is_live(path: str) -> bool:
    """A live part (the dashboard's, a run's log): scripts fetch it, so no redirect to a page."""
    return path.startswith("/live/") or path.endswith("/log")


class ConsoleRoute(APIRoute):
    """A console route: errors become pages in words; without a session, a page goes to sign-in."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded:
                if request.method == "GET" and not is_live(request.url.path):
                    return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
                return error_page(request, ApiError(401, "UNAUTHORIZED", "you are not signed in"))
            except ApiError as error:
                return error_page(request, error)
            except RequestValidationError as error:
                answer = invalid_request(error.errors())
                message = "; ".join(f"{p['field']}: {p['problem']}" for p in answer["content"]["details"]["problems"])
                return error_page(request, ApiError(answer["status_code"], "INVALID_REQUEST", message))

        return answer


class SecurityHeaders:
    """ASGI middleware: every answer but the API's own documents carries SECURITY_HEADERS."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(UNGUARDED):
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.lower().encode(), value.encode())
                    for name, value in SECURITY_HEADERS.items()
                    if name.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, receive, with_headers)


def body_of(model: type[BaseModel], **fields) -> BaseModel:
    """FIELDS as the API's request MODEL; 422 naming what is wrong, as the API answers a bad body."""
    try:
        return model(**fields)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:10])
        raise ApiError(422, "INVALID_REQUEST", f"the form is not valid: {problems}") from None


def ticked(form: dict[str, str], field: str) -> bool:
    """Whether a form's (or a query's) checkbox FIELD was ticked."""
    return form.get(field) in ("on", "true", "1")
