"""Signing in (with an API token, or a one-time link from `raydeploy api token create --sign-in-link`) and out.

Before a session exists, the sign-in forms are protected by a double-submitted token: a SameSite=Strict
cookie set with the form and the same value in it, so another site cannot sign a browser in as someone
else. Failed sign-ins count against the client's address exactly as failed API authentications do.
"""

from __future__ import annotations

import hmac
import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from raydeploy.api.console.access import (
    COOKIE,
    PRE_SIGN_IN_COOKIE,
    ConsoleRoute,
    Form,
    SignedIn,
    check_csrf,
    local_path,
    new_pre_sign_in_token,
    sessions,
)
from raydeploy.api.console.rendering import page
from raydeploy.api.console.sessions import SESSION_TTL_S
from raydeploy.api.context import Served, Service, unauthenticated
from raydeploy.api.errors import ApiError
from raydeploy.api.tokens import Identity

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
SIGN_IN_CODE = re.compile(r"([?&]code=)[^&\s]*")


class HideSignInCodes(logging.Filter):
    """Keeps a sign-in link's code out of the server's access log (uvicorn logs each request's path and query)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(SIGN_IN_CODE.sub(r"\1...", a) if isinstance(a, str) else a for a in record.args)
        return True


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    """An HttpOnly, SameSite=Strict cookie for the whole console (Secure when served over HTTPS)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def sign_in_form(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    """TEMPLATE's sign-in form with a fresh pre-sign-in token, in the form and in its cookie."""
    token = new_pre_sign_in_token()
    response = page(request, template, None, status=status, pre_sign_in=token, **context)
    set_cookie(request, response, PRE_SIGN_IN_COOKIE, token, 600)
    return response


def check_pre_sign_in(request: Request, form: dict[str, str]) -> None:
    """403 unless the form's pre-sign-in token is the one in this browser's cookie (set with the form)."""
    cookie = request.cookies.get(PRE_SIGN_IN_COOKIE, "")
    if not cookie or not hmac.compare_digest(form.get("pre_sign_in", "").encode(), cookie.encode()):
        raise ApiError(
            403, "CSRF_FAILED", "this sign-in form is not from this browser's sign-in page; open /signin and try again"
        )


def signed_in_answer(request: Request, served: Service, identity: Identity, next_path: str) -> RedirectResponse:
    """A new session for IDENTITY: its cookie set, the browser sent on to NEXT_PATH."""
    response = RedirectResponse(local_path(next_path), status_code=303)
    set_cookie(request, response, COOKIE, sessions(served).open(identity), SESSION_TTL_S)
    response.delete_cookie(PRE_SIGN_IN_COOKIE, path="/")
    return response


@router.get("/signin")
def sign_in_page(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form: an API token."""
    return sign_in_form(request, "signin.html", next_path=local_path(next), problem=None)


@router.post("/signin")
def sign_in(request: Request, served: Served, form: Form) -> Response:
    """Sign in with an API token: a session bound to it, or the form again saying why not."""
    check_pre_sign_in(request, form)
    token = form.get("token", "").strip()
    identity = served.tokens().identify(token) if token else None
    if identity is None:
        try:
            unauthenticated(request, served, "no token" if not token else "unknown or revoked token")
        except ApiError as error:
            problem = error.message if error.status == 429 else "That token is unknown or revoked."
            return sign_in_form(
                request, "signin.html", error.status, next_path=local_path(form.get("next")), problem=problem
            )
    return signed_in_answer(request, served, identity, form.get("next", "/"))


@router.get("/signin/link")
def sign_in_link_page(request: Request, served: Served, code: str = "") -> HTMLResponse:
    """A sign-in link: who it signs in as, and a button (a link opened by a preview bot is not used up)."""
    identity = sessions(served).link_identity(code) if code else None
    if identity is None:
        raise ApiError(
            401,
            "LINK_INVALID",
            "this sign-in link is unknown, used or expired (links last 15 minutes and work once); ask for a new "
            "one (raydeploy api token link NAME) or sign in with your token",
        )
    return sign_in_form(request, "signin_link.html", code=code, who=identity)


@router.post("/signin/link")
def sign_in_with_link(request: Request, served: Served, form: Form) -> Response:
    """Use a sign-in link up: a session for its token."""
    check_pre_sign_in(request, form)
    identity = sessions(served).use_link(form.get("code", ""))
    if identity is None:
        raise ApiError(401, "LINK_INVALID", "this sign-in link is unknown, used or expired; ask for a new one")
    return signed_in_answer(request, served, identity, "/")


@router.post("/signout")
def sign_out(request: Request, served: Served, visitor: SignedIn, form: Form) -> Response:
    """End this session."""
    check_csrf(request, served, visitor, form)
    sessions(served).close(visitor.cookie, visitor.identity)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
