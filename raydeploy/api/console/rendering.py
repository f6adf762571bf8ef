"""Pages from templates: one Jinja2 environment with autoescaping on for everything, and error pages in words.

Everything a host, a run or a person wrote reaches a page through `{{ }}`, which escapes it; no template
marks anything safe. Pages carry no inline script or style (the Content-Security-Policy forbids them).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from raydeploy import __version__
from raydeploy.api.errors import ApiError

HERE = Path(__file__).resolve().parent
ENVIRONMENT = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, trim_blocks=True)


def duration(started: str | None, finished: str | None) -> str:
    """How long from STARTED to FINISHED (ISO times, as the state records them), e.g. '1 min 12 s'; '' if unknown.

    >>> duration("2026-11-30T10:00:00.000000Z", "2026-11-30T10:01:12.500000Z")
    '1 min 12 s'
    """
    try:
        seconds = round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds())
    except (TypeError, ValueError):
        return ""
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


ENVIRONMENT.filters["duration"] = duration
# What to do next, per error, beside the server's own message.
NEXT_STEPS = {
    401: "Sign in again (your session ended, or its token was revoked).",
    403: "Ask an admin for a token with the role this needs (raydeploy api token create --role ...).",
    404: "Check the name in the address, or go back to the dashboard.",
    409: "Wait for the run in progress to end (see Runs), or run the earlier checkpoints first.",
    422: "Correct the form and send it again.",
    429: "Wait a little, then reload.",
    503: "Check that the cluster's hosts answer (raydeploy lab status, or the Nodes page), then reload.",
}


def page(request: Request, template: str, visitor=None, status: int = 200, **context) -> HTMLResponse:
    """TEMPLATE rendered for VISITOR (None before sign-in) with CONTEXT, as an HTML response."""
    html = ENVIRONMENT.get_template(template).render(
        visitor=visitor, path=request.url.path, version=__version__, **context
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, error: ApiError, visitor=None) -> HTMLResponse:
    """ERROR in words: what happened, the server's message, and what to do."""
    response = page(
        request,
        "error.html",
        visitor,
        status=error.status,
        error=error,
        next_step=NEXT_STEPS.get(error.status, "Reload the page; if it persists, see the server's log."),
    )
    response.headers.update(error.headers)
    return response
