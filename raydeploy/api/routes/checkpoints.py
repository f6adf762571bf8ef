"""Checkpoints: their status, their plan now, and running one in the background (202, 400, 409)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from raydeploy.api import models, runs
from raydeploy.api.context import CheckpointName, Operator, Served, Service, Viewer, known_checkpoint, refuse
from raydeploy.api.errors import ApiError, error_body, now
from raydeploy.api.tokens import Identity
from raydeploy.api.views import approval_info, checkpoint_status, plan_answer
from raydeploy.approvals import Approvals
from raydeploy.checkpoints import NAMES, get, needs_approval, needs_risk_acknowledgement, risky
from raydeploy.plans import Plan
from raydeploy.runner import new_run_id
from raydeploy.state import Lock, LockHeld, StateStore

router = APIRouter(tags=["Checkpoints"])


@router.get("/api/v1/checkpoints", response_model=list[models.CheckpointStatus])
def list_checkpoints(served: Served, _: Viewer) -> list[dict]:
    """Status of every checkpoint, from the last run that ran it."""
    store = served.db()
    return [checkpoint_status(store, name) for name in NAMES]


@router.get("/api/v1/checkpoints/{checkpoint_name}", response_model=models.CheckpointStatus)
def get_checkpoint(checkpoint_name: CheckpointName, served: Served, _: Viewer) -> dict:
    """One checkpoint's status; 404 lists the valid names."""
    return checkpoint_status(served.db(), known_checkpoint(checkpoint_name))


@router.get("/api/v1/plan/{checkpoint_name}", response_model=models.PlanView)
def get_plan(checkpoint_name: CheckpointName, served: Served, _: Viewer) -> dict:
    """What the checkpoint would change now, per host (pyinfra's dry run; nothing changes), and the
    digest an approval binds to."""
    plan = served.plan(known_checkpoint(checkpoint_name))
    return plan_answer(served, plan)


def take_lock(store: StateStore, run_id: str, who: str) -> Lock:
    """The state's lock for RUN_ID, or 409 naming the run that holds it (an API or a CLI run)."""
    try:
        return store.acquire(run_id, who)
    except LockHeld as error:
        held = store.current_lock()
        raise ApiError(409, "RUN_IN_PROGRESS", str(error), {"run_id": held.run_id if held else None}) from None


def check_predecessors(store: StateStore, name: str) -> None:
    """409 when a checkpoint before NAME has not passed (the body's force: true skips this)."""
    missing = [
        earlier
        for earlier in NAMES[: NAMES.index(name)]
        if (store.last_result(earlier) or {}).get("status") != "succeeded"
    ]
    if missing:
        raise ApiError(
            409,
            "PREREQUISITES_NOT_MET",
            f"{name} comes after {', '.join(missing)}, which ha{'s' if len(missing) == 1 else 've'} "
            'not passed; run them first, or send {"force": true}',
            {"not_passed": missing},
        )


def approve_on_execute(served: Service, identity: Identity, path: str, plan: Plan) -> None:
    """{"approve": true}: the caller approves PLAN itself, when its role and the rules allow."""
    checkpoint = get(plan.checkpoint)
    if not identity.has("approver"):
        raise refuse(
            served,
            identity,
            path,
            f"approve: true needs the approver role; the token {identity.name} is {identity.role}",
        )
    if needs_risk_acknowledgement(checkpoint, plan):
        raise refuse(
            served,
            identity,
            path,
            f"{checkpoint.name} is {risky(checkpoint)}: approve: true cannot approve it. An approver reads the plan "
            f"(GET /api/v1/approvals/{checkpoint.name}) and grants it with POST /api/v1/approvals/"
            f"{checkpoint.name} and acknowledge_risks: true"
            + (
                "; with separation of duties, someone other than whoever starts the run"
                if served.separation_of_duties
                else ""
            ),
            "APPROVAL_NOT_ALLOWED",
        )
    Approvals(served.db(), served.separation_of_duties).grant(
        plan, identity.name, "approve: true on execute", source="api", actor=identity.name
    )


def approval_missing(served: Service, identity: Identity, path: str, name: str, approve: bool) -> JSONResponse | None:
    """The 400 APPROVAL_REQUIRED answer when NAME's plan now changes something and nobody approved it."""
    if not (get(name).approval_required or get(name).may_disrupt):
        return None
    plan = served.plan(name)
    if not plan.has_changes or not needs_approval(get(name), plan):
        return None
    decision = Approvals(served.db(), served.separation_of_duties).find(plan, requested_by=identity.name)
    if decision.approval is not None:
        return None
    if approve:
        approve_on_execute(served, identity, path, plan)
        return None
    info = approval_info(served, name, plan)
    served.db().audit.append(identity.name, "approval requested", name, plan_digest=plan.digest, via="api")
    message = (
        f"{name} needs an approval for plan {plan.digest}"
        + (f" ({decision.reason})" if decision.reason else "")
        + f"; nothing was changed. {info['message']}"
    )
    body = {**error_body("APPROVAL_REQUIRED", message), "checkpoint": name, "approval_info": info}
    return JSONResponse(body, status_code=400)


@router.post(
    "/api/v1/checkpoints/{checkpoint_name}",
    status_code=202,
    response_model=models.CheckpointExecution,
    responses={
        400: {"model": models.ApprovalRequired, "description": "Approval required (a malformed body is 422)"},
        409: {"model": models.Error, "description": "A run is in progress, or an earlier checkpoint has not passed"},
    },
)
def execute_checkpoint(
    checkpoint_name: CheckpointName,
    request: Request,
    served: Served,
    identity: Operator,
    body: Annotated[models.CheckpointExecutionRequest | None, Body()] = None,
) -> dict | JSONResponse:
    """Start a checkpoint: 202 with the run's id at once (it runs in the background; follow
    /api/v1/runs/{id}/log), 400 APPROVAL_REQUIRED with the plan's impact when an approval is
    missing, 409 when a run holds the lock or an earlier checkpoint has not passed (force: true)."""
    name = known_checkpoint(checkpoint_name)
    body = body or models.CheckpointExecutionRequest()
    store, run_id = served.db(), new_run_id()
    lock = take_lock(store, run_id, identity.name)
    started = False  # until the run owns the lock, every way out of here gives it back
    try:
        if not body.force:
            check_predecessors(store, name)
        refusal = approval_missing(served, identity, request.url.path, name, body.approve)
        if refusal is not None:
            return refusal
        runs.start(served.inventory, served.state_dir, lock, name, identity.name, served.separation_of_duties)
        started = True
    finally:
        if not started:
            store.release(lock)
    return started_answer(name, run_id)


def started_answer(name: str, run_id: str, message: str | None = None) -> dict:
    """The 202 answer of a run started in the background: where to follow it."""
    return {
        "checkpoint": name,
        "execution_id": run_id,
        "status": "STARTED",
        "started_at": now(),
        "message": message or f"run {run_id} started {name}; follow its log at /api/v1/runs/{run_id}/log",
        "run_url": f"/api/v1/runs/{run_id}",
        "log_url": f"/api/v1/runs/{run_id}/log",
    }
