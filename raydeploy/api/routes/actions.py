"""Day-2 actions over HTTP: destroy, remove-node and rollback. Requested by an operator, approved by an approver
(POST /api/v1/approvals/destroy with the same data and acknowledge_risks), run in the background
through the same runner, lock, approvals and audit trail as `raydeploy destroy`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from raydeploy.api import models, runs
from raydeploy.api.context import Approver, Operator, Served, Service, Viewer
from raydeploy.api.errors import ApiError, error_body
from raydeploy.api.routes.approvals import check_approver, granted
from raydeploy.api.routes.checkpoints import started_answer, take_lock
from raydeploy.api.views import approval_info, plan_answer
from raydeploy.approvals import Approvals
from raydeploy.checkpoints import get, needs_approval
from raydeploy.destroy import ACTION, destroy_data, run_destroy
from raydeploy.node_actions import removal_data
from raydeploy.plans import Plan
from raydeploy.runner import new_run_id

router = APIRouter(prefix="/api/v1/actions", tags=["Actions"])


@router.post(
    "/destroy",
    status_code=202,
    response_model=models.CheckpointExecution,
    responses={409: {"model": models.Error, "description": "A run is in progress"}},
)
def request_destroy(
    served: Served, identity: Operator, body: Annotated[models.DestroyRequest | None, Body()] = None
) -> dict:
    """Destroy the cluster: 202 with the run's id at once (follow /api/v1/runs/{id}/log). The run plans
    the teardown from the hosts; without an approval of that plan it ends awaiting-approval (nothing
    removed) and an approver grants it with POST /api/v1/approvals/destroy, sending the same data
    (`{"purge_data": "true"}` ...) and acknowledge_risks: true; with separation of duties, not the
    requester. Then request it again. A host that cannot be reached fails the run, the others are torn
    down; requesting it again finishes the job."""
    body = body or models.DestroyRequest()
    data = destroy_data(body.purge_data, body.forget_secrets)
    store, run_id = served.db(), new_run_id()
    lock = take_lock(store, run_id, identity.name)
    command = "POST /api/v1/actions/destroy" + "".join(f" {key}=true" for key in sorted(data))
    try:
        runs.start(
            served.inventory,
            served.state_dir,
            lock,
            ACTION,
            identity.name,
            served.separation_of_duties,
            data=data,
            run_with=run_destroy,
            command=command,
        )
    except BaseException:
        store.release(lock)
        raise
    return started_answer(
        ACTION,
        run_id,
        f"run {run_id} started {ACTION}; follow its log at /api/v1/runs/{run_id}/log; if it ends "
        f"awaiting-approval, an approver sends POST /api/v1/approvals/{ACTION} with data {data}",
    )


@router.post("/destroy/plan", response_model=models.PlanView)
def plan_destroy(served: Served, _: Viewer, body: Annotated[models.DestroyRequest | None, Body()] = None) -> dict:
    """What destroying the cluster would remove, per host (found on the hosts themselves), and the digest
    an approval binds to (POST /api/v1/approvals/destroy with the same data). Nothing changes."""
    body = body or models.DestroyRequest()
    plan = planned(served, destroy_data(body.purge_data, body.forget_secrets), ACTION)
    return {**plan.as_dict(), "text": plan.describe()}


REMOVE_NODE = "remove-node"


def arguments(body: models.RemoveNodeRequest) -> dict[str, str]:
    """BODY as the action's host data; 422 naming a bad argument."""
    try:
        return removal_data(body.hosts, body.drain_timeout, body.remove_on_drain_timeout)
    except ValueError as problem:
        raise ApiError(422, "INVALID_REQUEST", str(problem)) from None


def planned(served: Service, data: dict[str, str], name: str = REMOVE_NODE) -> Plan:
    """Action NAME's plan for DATA; 400 INVALID_REQUEST with the deploy's words when it refuses (the head,
    unknown hosts, a spec whose hosts are not the inventory's)."""
    plan = served.plan(name, data)
    if plan.failed:
        reasons = sorted(set(plan.failed.values())) or [plan.document.get("error", "")]
        raise ApiError(400, "INVALID_REQUEST", "; ".join(reasons)[:4000], {"action": name})
    return plan


@router.post("/remove-node/plan", response_model=models.PlanView)
def plan_removal(served: Served, _: Viewer, body: models.RemoveNodeRequest) -> dict:
    """What removing these workers would do, per host, and the digest an approval binds to (nothing changes)."""
    plan = planned(served, arguments(body))
    return plan_answer(served, plan)


@router.post(
    "/remove-node/approvals",
    response_model=models.ApprovalResponse,
    responses={409: {"model": models.Error, "description": "PLAN_CHANGED: the plan is no longer the one read"}},
)
def approve_removal(
    request: Request, served: Served, identity: Approver, body: models.RemoveNodeApprovalRequest
) -> dict:
    """Approve removing these workers (acknowledge_risks required; with separation of duties, not by
    whoever requested the run)."""
    check_approver(served, identity, request.url.path, REMOVE_NODE, None)
    return granted(served, identity, REMOVE_NODE, planned(served, arguments(body)), body)


@router.post(
    "/remove-node",
    status_code=202,
    response_model=models.CheckpointExecution,
    responses={
        400: {"model": models.ApprovalRequired | models.Error, "description": "Approval required, or hosts it refuses"},
        409: {"model": models.Error, "description": "A run is in progress"},
    },
)
def remove_nodes(served: Served, identity: Operator, body: models.RemoveNodeRequest) -> dict | JSONResponse:
    """Drain and remove these workers: 202 with the run's id (follow /api/v1/runs/{id}/log), 400
    APPROVAL_REQUIRED when no approval of exactly this plan exists, 409 when a run holds the lock."""
    data = arguments(body)
    return start_action(served, identity, REMOVE_NODE, data, lambda: planned(served, data), fail_percent=0)


def start_action(
    served: Service, identity, name: str, data: dict[str, str], plan_now, fail_percent: int | None = None
) -> dict | JSONResponse:
    """Start day-2 action NAME with DATA in the background once PLAN_NOW()'s plan needs no approval or
    has one: 202 with the run's id, or 400 APPROVAL_REQUIRED (nothing changed), 409 when a run holds the lock."""
    store, run_id = served.db(), new_run_id()
    lock = take_lock(store, run_id, identity.name)
    started = False
    try:
        plan = plan_now()
        decision = Approvals(store, served.separation_of_duties).find(plan, requested_by=identity.name)
        if plan.has_changes and needs_approval(get(name), plan) and decision.approval is None:
            return awaiting_approval(served, identity, run_id, plan, decision.reason)
        runs.start(
            served.inventory,
            served.state_dir,
            lock,
            name,
            identity.name,
            served.separation_of_duties,
            data,
            fail_percent=fail_percent,
        )
        started = True
    finally:
        if not started:
            store.release(lock)
    return started_answer(name, run_id)


def awaiting_approval(served: Service, identity, run_id: str, plan: Plan, why: str) -> JSONResponse:
    """400 APPROVAL_REQUIRED for PLAN, and run RUN_ID recorded as awaiting that approval, as a destroy's run or
    the CLI's ends: with separation of duties, check_approver then refuses its requester at approval time."""
    name, store = plan.checkpoint, served.db()
    info = approval_info(served, name, plan)
    store.audit.append(identity.name, "approval requested", name, plan_digest=plan.digest, via="api")
    message = f"{name} needs an approval for plan {plan.digest}{f' ({why})' if why else ''}; nothing was changed. "
    message += info["message"]
    store.start_run(run_id, identity.name, f"POST /api/v1/actions/{name}", served.inventory, plan.fingerprint, [name])
    store.finish_run(run_id, "awaiting-approval", name, [], message)
    body = {**error_body("APPROVAL_REQUIRED", message), "checkpoint": name, "approval_info": info}
    return JSONResponse(body, status_code=400)


ROLLBACK = "rollback"


def rollback_data(served: Service, body: models.RollbackRequest) -> dict[str, str]:
    """The run BODY goes back to (by default the latest recorded spec unlike the inventory's) as the
    action's data; 400 NOTHING_TO_ROLL_BACK or INVALID_REQUEST naming why."""
    from deploys.recorded_specs import SpecError, read_spec
    from raydeploy.converged import rollback_candidate

    try:
        target = body.to or rollback_candidate(served.inventory, str(served.state_dir))
        if target is None:
            raise ApiError(400, "NOTHING_TO_ROLL_BACK", "no recorded spec differs from the inventory's")
        read_spec(served.state_dir, target)
    except SpecError as problem:
        raise ApiError(400, "INVALID_REQUEST", str(problem)) from None
    return {"rollback_to": target}


@router.post("/rollback/plan", response_model=models.PlanView)
def plan_rollback(served: Served, _: Viewer, body: models.RollbackRequest) -> dict:
    """What going back to a recorded spec would do, per host (what goes back is in each host's notes),
    whether it restarts the cluster, and the digest an approval binds to (POST /api/v1/approvals/rollback
    with data {"rollback_to": RUN_ID}). Nothing changes."""
    plan = planned(served, rollback_data(served, body), ROLLBACK)
    return plan_answer(served, plan)


@router.post(
    "/rollback",
    status_code=202,
    response_model=models.CheckpointExecution,
    responses={
        400: {
            "model": models.ApprovalRequired | models.Error,
            "description": "Approval required, or nothing to roll back to",
        },
        409: {"model": models.Error, "description": "A run is in progress"},
    },
)
def roll_back(served: Served, identity: Operator, body: models.RollbackRequest) -> dict | JSONResponse:
    """Go back to a recorded spec (body.to, or the latest that differs from the inventory's): 202 with the
    run's id; 400 APPROVAL_REQUIRED when the plan restarts the cluster and no approval of exactly it exists."""
    data = rollback_data(served, body)
    return start_action(served, identity, ROLLBACK, data, lambda: planned(served, data, ROLLBACK))
