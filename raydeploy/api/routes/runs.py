"""Runs (the API's and the CLI's alike), a run's live log as server-sent events, and the audit trail."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse

from raydeploy.api import models, runs
from raydeploy.api.context import Admin, Served, Viewer
from raydeploy.api.errors import ApiError, json_errors
from raydeploy.api.views import filtered_runs, run_results, searched_events

router = APIRouter(prefix="/api/v1")
# An event id this API sends: a byte offset. Anything else (a non-digit, a 5,000-digit number) is a 400.
EVENT_ID = r"^[0-9]{1,18}$"
DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


@router.get("/runs", tags=["Runs"], response_model=list[models.Run])
def list_runs(
    served: Served,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    status: Annotated[str | None, Query(max_length=40, description="Only runs with this status")] = None,
    checkpoint: Annotated[str | None, Query(max_length=80, description="Only runs of this checkpoint")] = None,
    requested_by: Annotated[str | None, Query(max_length=200, description="Only runs this person started")] = None,
    since: Annotated[str | None, Query(pattern=DAY, description="Only runs started on or after this day")] = None,
) -> list[dict]:
    """Past runs, newest first (API and CLI runs alike), filtered by status, checkpoint, who and day."""
    return filtered_runs(served.db(), limit, status, checkpoint, requested_by, since)


def known_run(served, run_id: str) -> dict:
    store = served.db()
    found = store.run(run_id)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"no run {run_id[:80]!r}", {"recent": [r["id"] for r in store.runs(5)]})
    return found


@router.get("/runs/{run_id}", tags=["Runs"], response_model=models.RunDetails)
def get_run(run_id: str, served: Served, _: Viewer) -> dict:
    """One run with each checkpoint's result, each host's operation results and checks, and the approvals it used."""
    return {**known_run(served, run_id), **run_results(served.db(), run_id)}


@router.get(
    "/runs/{run_id}/log",
    tags=["Runs"],
    response_class=EventSourceResponse,
    responses=json_errors("text/event-stream", "The run's log, live"),
)
def run_log(
    run_id: str,
    served: Served,
    identity: Viewer,
    last_event_id: Annotated[
        str | None, Header(pattern=EVENT_ID, description="The id of the last event received: resume after it")
    ] = None,
) -> EventSourceResponse:
    """The run's log as server-sent events, live until the run ends: `log` events (id is a byte
    offset: reconnect with Last-Event-ID to resume), then one `end` event with the run's status.
    A token holds at most 8 streams open at once (429 TOO_MANY_STREAMS)."""
    known_run(served, run_id)
    events = runs.stream(served.state_dir, run_id, int(last_event_id or 0))
    return runs.log_response(served.counted_stream(identity.token_id, events))


@router.get("/audit", tags=["Audit"], response_model=list[models.AuditEvent])
def audit(
    served: Served,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    q: Annotated[str | None, Query(max_length=200, description="Only events whose text holds this (any case)")] = None,
) -> list[dict]:
    """The newest audit events (admin only); with q, the newest that mention it (actor, event, target, details)."""
    return searched_events(served.db(), limit, q)


@router.get("/audit/verify", tags=["Audit"], response_model=models.AuditVerification)
def verify_audit(served: Served, _: Admin) -> dict:
    """The trail's hash chain checked, as `raydeploy audit --verify` checks it (admin only)."""
    trail = served.db().audit
    problems = trail.verify()
    return {"intact": not problems, "events": len(trail.events()), "problems": problems}
