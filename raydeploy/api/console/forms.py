"""The console's actions: each form calls the API's own route function as the signed-in visitor.

Every handler here is behind `acting(role)`: a live session, its CSRF token in the form, and the role the
API demands for the same action (the same 403, audited). A form's fields become the API's request body
(its pydantic model: the same limits, the same refusals). After an action the browser is sent to the page
that shows its result (POST, redirect, GET).
"""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from raydeploy.api import models
from raydeploy.api.console.access import ConsoleRoute, Form, Visitor, acting, body_of, ticked
from raydeploy.api.console.pages import dashboard_links
from raydeploy.api.console.planning import ARGUMENTS, action_request, known_action
from raydeploy.api.console.rendering import page
from raydeploy.api.context import Served
from raydeploy.api.errors import ApiError
from raydeploy.api.routes import actions
from raydeploy.api.routes import approvals as approval_routes
from raydeploy.api.routes import checkpoints as checkpoint_routes
from raydeploy.secret_access import SecretUnavailable, reveal

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
AsOperator = Annotated[Visitor, Depends(acting("operator"))]
AsApprover = Annotated[Visitor, Depends(acting("approver"))]
AsAdmin = Annotated[Visitor, Depends(acting("admin"))]


def approval_fields(form: dict[str, str]) -> dict:
    return {
        "reason": form.get("reason", "").strip(),
        "acknowledge_risks": ticked(form, "acknowledge_risks"),
        "ttl_minutes": form.get("ttl_minutes") or 60,
        "plan_digest": form.get("plan_digest") or None,
    }


def started_or_asked(answer: dict | JSONResponse, asked_at: str) -> RedirectResponse:
    """To the run an action started, or to ASKED_AT when the API answered 400 APPROVAL_REQUIRED."""
    if isinstance(answer, JSONResponse):
        error = json.loads(answer.body)
        if error.get("error") == "APPROVAL_REQUIRED":
            return RedirectResponse(f"{asked_at}{'&' if '?' in asked_at else '?'}done=asked", status_code=303)
        raise ApiError(answer.status_code, error.get("error", "ERROR"), error.get("message", ""))
    return RedirectResponse(f"/runs/{answer['execution_id']}", status_code=303)


@router.post("/run/{name}")
def run_checkpoint(request: Request, name: str, served: Served, visitor: AsOperator, form: Form) -> RedirectResponse:
    """Run a checkpoint (POST /api/v1/checkpoints/NAME): to its run, or to its approval page when one is needed."""
    body = body_of(models.CheckpointExecutionRequest, force=ticked(form, "force"))
    answer = checkpoint_routes.execute_checkpoint(name, request, served, visitor.identity, body)
    return started_or_asked(answer, f"/approvals/{name}")


@router.post("/approvals/{name}/approve")
def approve(request: Request, name: str, served: Served, visitor: AsApprover, form: Form) -> RedirectResponse:
    """Approve NAME's current plan as the visitor (POST /api/v1/approvals/NAME); never as a name from the form."""
    body = body_of(models.ApprovalRequest, **approval_fields(form))
    approval_routes.grant_approval(name, request, served, visitor.identity, body)
    return RedirectResponse(f"/approvals/{name}?done=approved", status_code=303)


@router.post("/approvals/{name}/reject")
def reject(name: str, served: Served, visitor: AsApprover, form: Form) -> RedirectResponse:
    """Reject NAME's current plan (POST /api/v1/approvals/NAME/reject)."""
    body = body_of(models.RejectionRequest, reason=form.get("reason", "").strip())
    approval_routes.reject_approval(name, served, visitor.identity, body)
    return RedirectResponse(f"/approvals/{name}?done=rejected", status_code=303)


@router.post("/approvals/{name}/revoke")
def revoke(name: str, served: Served, visitor: AsApprover, form: Form) -> RedirectResponse:
    """Withdraw one approval of NAME (POST /api/v1/approvals/NAME/revoke)."""
    fields = {"approval_id": form.get("approval_id", ""), "reason": form.get("reason", "").strip()}
    approval_routes.revoke_approval(name, served, visitor.identity, body_of(models.RevocationRequest, **fields))
    return RedirectResponse(f"/approvals/{name}?done=revoked", status_code=303)


def action_arguments(form: dict[str, str]) -> dict[str, str]:
    """The action's arguments a form carries back (the page's hidden fields), nothing else."""
    return {key: form[key] for key in ARGUMENTS if form.get(key)}


@router.post("/actions/{name}/approve")
def approve_action(request: Request, name: str, served: Served, visitor: AsApprover, form: Form) -> RedirectResponse:
    """Approve a day-2 action's plan for the form's arguments (as POST /api/v1/actions/remove-node/approvals or
    POST /api/v1/approvals/NAME with its data), bound to the digest the approver read."""
    action = known_action(name)
    args = action_arguments(form)
    asked = action_request(action, args)
    if name == actions.REMOVE_NODE:
        body = body_of(models.RemoveNodeApprovalRequest, **asked.model_dump(), **approval_fields(form))
        actions.approve_removal(request, served, visitor.identity, body)
    else:
        body = body_of(models.ApprovalRequest, data=action.data(served, asked), **approval_fields(form))
        approval_routes.grant_approval(name, request, served, visitor.identity, body)
    return RedirectResponse(f"/actions/{name}?{urlencode({**args, 'done': 'approved'})}", status_code=303)


@router.post("/actions/{name}/run")
def run_action(name: str, served: Served, visitor: AsOperator, form: Form) -> RedirectResponse:
    """Start a day-2 action for the form's arguments (POST /api/v1/actions/NAME): to its run, or back to its page
    when it needs an approval it does not have."""
    action = known_action(name)
    args = action_arguments(form)
    start = {actions.REMOVE_NODE: actions.remove_nodes, actions.ROLLBACK: actions.roll_back}.get(name)
    answer = (start or actions.request_destroy)(served, visitor.identity, action_request(action, args))
    return started_or_asked(answer, f"/actions/{name}?{urlencode(args)}")


@router.post("/secrets/ray-auth-token")
def show_ray_token(request: Request, served: Served, visitor: AsAdmin, form: Form) -> HTMLResponse:
    """The Ray dashboard's token, for an admin to paste into the dashboard's sign-in prompt; audited."""
    try:
        token = reveal(served.inventory, served.db(), "ray-auth-token", visitor.name, "console")
    except SecretUnavailable as error:
        raise ApiError(503, "SECRET_MISSING", str(error)) from None
    links = dashboard_links(served)
    return page(request, "secret.html", visitor, token=token, dashboard=links.get("Ray dashboard"))
