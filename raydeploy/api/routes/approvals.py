"""Approvals: what a checkpoint's plan needs, granting it as the token's identity, rejecting it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request

from raydeploy.api import models
from raydeploy.api.context import (
    ActionData,
    Approver,
    CheckpointName,
    Served,
    Service,
    Viewer,
    known_checkpoint_or_action,
    query_data,
    refuse,
)
from raydeploy.api.errors import ApiError, now
from raydeploy.api.tokens import Identity
from raydeploy.api.views import approval_info
from raydeploy.approvals import ApprovalError, Approvals
from raydeploy.checkpoints import get, needs_approval, needs_risk_acknowledgement
from raydeploy.plans import Plan

router = APIRouter(prefix="/api/v1/approvals", tags=["Approvals"])


@router.get("/{checkpoint_name}", response_model=models.ApprovalInfo)
def get_approval(checkpoint_name: CheckpointName, served: Served, _: Viewer, with_data: ActionData = None) -> dict:
    """Whether the checkpoint needs an approval, its current plan's impact per host, and the valid approvals.
    A day-2 action's plan is the one for its arguments (`?with=purge_data=true`)."""
    name = known_checkpoint_or_action(checkpoint_name)
    data = query_data(with_data)
    planned = get(name).approval_required or get(name).may_disrupt
    return approval_info(served, name, served.plan(name, data) if planned else None)


def check_approver(
    served: Service, identity: Identity, path: str, name: str, claimed: str | None, plan: Plan | None = None
) -> None:
    """403 when the body names another approver, or when separation of duties forbids this one (for a
    destructive checkpoint, or a disruptive PLAN)."""
    if claimed is not None and claimed.strip() != identity.name:
        raise refuse(
            served,
            identity,
            path,
            f"approved_by {claimed!r} is not this token's identity {identity.name!r}: the approver is "
            "whoever holds the token (leave approved_by out, or send your own name)",
            "IDENTITY_MISMATCH",
            claimed=claimed[:200],
        )
    if not (needs_risk_acknowledgement(get(name), plan) and served.separation_of_duties):
        return
    waiting = next(
        (r for r in served.db().runs(50) if r["status"] == "awaiting-approval" and r["failed_checkpoint"] == name),
        None,
    )
    if waiting and waiting["requested_by"] == identity.name:
        raise refuse(
            served,
            identity,
            path,
            f"{identity.name} requested run {waiting['id']}, which waits for this approval; with separation "
            "of duties another approver must approve a destructive checkpoint",
            "SEPARATION_OF_DUTIES",
            run_id=waiting["id"],
        )


@router.post(
    "/{checkpoint_name}",
    response_model=models.ApprovalResponse,
    responses={409: {"model": models.Error, "description": "PLAN_CHANGED: the plan is no longer the one read"}},
)
def grant_approval(
    checkpoint_name: CheckpointName, request: Request, served: Served, identity: Approver, body: models.ApprovalRequest
) -> dict:
    """Approve the checkpoint's current plan as this token's identity (approved_by, if sent, must be it).
    The approval is bound to the plan's digest, used once, and expires (ttl_minutes)."""
    name = known_checkpoint_or_action(checkpoint_name)
    check_approver(served, identity, request.url.path, name, body.approved_by)
    if not (get(name).approval_required or get(name).may_disrupt):
        raise ApiError(400, "APPROVAL_NOT_NEEDED", f"{name} needs no approval; it runs without one")
    plan = served.plan(name, body.data)
    check_approver(served, identity, request.url.path, name, body.approved_by, plan)
    if not needs_approval(get(name), plan):
        raise ApiError(400, "APPROVAL_NOT_NEEDED", f"{name}'s plan restarts no node cluster-wide: it runs without one")
    return granted(served, identity, name, plan, body)


def granted(served: Service, identity: Identity, name: str, plan: Plan, body: Any) -> dict:
    """Grant NAME's PLAN as IDENTITY with BODY's reason, risks and ttl_minutes; the seed's answer
    (400 APPROVAL_REFUSED with why). The one grant every approval endpoint makes.

    When BODY names the plan_digest its approver read, the approval binds to that plan or to none: a plan
    that changed since (the hosts, the inventory) is refused with 409 PLAN_CHANGED, nothing granted."""
    if body.plan_digest and body.plan_digest != plan.digest:
        raise ApiError(
            409,
            "PLAN_CHANGED",
            f"{name}'s plan changed since it was read (read {body.plan_digest}, now {plan.digest}): "
            f"read the new plan and approve it",
            {"checkpoint": name, "plan_digest": plan.digest},
        )
    try:
        approval = Approvals(served.db(), served.separation_of_duties).grant(
            plan,
            identity.name,
            body.reason,
            body.acknowledge_risks,
            ttl=timedelta(minutes=body.ttl_minutes),
            source="api",
            actor=identity.name,
        )
    except ApprovalError as error:
        raise ApiError(400, "APPROVAL_REFUSED", str(error), {"checkpoint": name}) from None
    return {
        "checkpoint": name,
        "approved": True,
        "approved_by": approval["approved_by"],
        "approved_at": approval["created_at"],
        "approval_token": approval["id"],
        "plan_digest": approval["plan_digest"],
        "expires_at": approval["expires_at"],
    }


@router.post("/{checkpoint_name}/reject", response_model=models.RejectionResponse)
def reject_approval(
    checkpoint_name: CheckpointName, served: Served, identity: Approver, body: models.RejectionRequest
) -> dict:
    """Reject the checkpoint's current plan: every valid approval of it is closed; audited."""
    name = known_checkpoint_or_action(checkpoint_name)
    if not (get(name).approval_required or get(name).may_disrupt):
        raise ApiError(400, "APPROVAL_NOT_NEEDED", f"{name} needs no approval; there is nothing to reject")
    plan = served.plan(name, body.data)
    try:
        Approvals(served.db(), served.separation_of_duties).reject(plan, identity.name, body.reason)
    except ApprovalError as error:
        raise ApiError(400, "INVALID_REQUEST", str(error)) from None
    return {
        "checkpoint": name,
        "rejected": True,
        "rejected_by": identity.name,
        "rejected_at": now(),
        "plan_digest": plan.digest,
    }


@router.post("/{checkpoint_name}/revoke", response_model=models.RevocationResponse)
def revoke_approval(
    checkpoint_name: CheckpointName, served: Served, identity: Approver, body: models.RevocationRequest
) -> dict:
    """Withdraw one valid approval of the checkpoint before a run uses it; audited. 404 when the checkpoint
    has no such approval, 400 when it is no longer valid (used, expired, rejected, revoked)."""
    name = known_checkpoint_or_action(checkpoint_name)
    approvals = Approvals(served.db(), served.separation_of_duties)
    found = approvals.get(body.approval_id)
    if found is None or found["checkpoint"] != name:
        raise ApiError(404, "NOT_FOUND", f"{name} has no approval {body.approval_id}", {"checkpoint": name})
    try:
        approvals.revoke(body.approval_id, identity.name, body.reason)
    except ApprovalError as error:
        raise ApiError(400, "INVALID_REQUEST", str(error), {"checkpoint": name}) from None
    return {
        "checkpoint": name,
        "approval_id": body.approval_id,
        "revoked": True,
        "revoked_by": identity.name,
        "revoked_at": now(),
    }
