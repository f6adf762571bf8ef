"""The console's pages that show a plan: a checkpoint's plan, its approval page, and the day-2 actions (remove a
worker, roll back, destroy the cluster).

A plan is a dry run against the hosts and takes seconds. These pages answer at once with the newest plan this
server made for the same thing (marked with its age), or a placeholder when there is none, and name where the
fresh plan is made (`data-behind`): static/console.js loads it from /live/... and swaps it in; `?wait=1` makes
it in the request, for a browser without scripts. An approver approves the plan they read: the form sends its
digest, and the API refuses with 409 PLAN_CHANGED when the plan is no longer that one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from raydeploy.api import models
from raydeploy.api.console.access import ConsoleRoute, SignedIn, body_of, ticked
from raydeploy.api.console.rendering import page
from raydeploy.api.context import Served, Service, known_checkpoint, known_checkpoint_or_action, plan_key
from raydeploy.api.errors import ApiError
from raydeploy.api.routes import actions
from raydeploy.api.views import approval_info
from raydeploy.approvals import Approvals
from raydeploy.checkpoints import ACTION_NAMES, NAMES, get, needs_approval, needs_risk_acknowledgement, risky
from raydeploy.destroy import ACTION as DESTROY
from raydeploy.destroy import destroy_data
from raydeploy.plans import Plan, shown

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)
Wait = Annotated[bool, Query(description="make the plan in this request (for a browser without scripts)")]


@dataclass(frozen=True)
class Shown:
    """A plan as a page shows it: the plan (None while the fresh one is made), how old, where the fresh one comes from."""

    plan: Plan | None
    age_s: int | None = None
    behind: str | None = None
    problem: str | None = None

    @property
    def freshness(self) -> str:
        if self.age_s is None:
            return "planned just now"
        return f"planned {self.age_s // 60} min ago" if self.age_s >= 60 else f"planned {self.age_s} s ago"


def showing(served: Service, name: str, data: dict[str, str] | None, wait: bool, behind: str) -> Shown:
    """NAME's plan for DATA: made now when WAIT, else the newest made here (or none), with BEHIND to make it fresh."""
    if wait:
        try:
            return Shown(served.plan(name, data) if name not in ACTION_NAMES else actions.planned(served, data, name))
        except ApiError as error:
            return Shown(None, problem=error.message)
    cached = served.latest_plans.get(plan_key(name, data))
    if cached is None:
        return Shown(None, behind=behind)
    return Shown(cached[1], age_s=max(0, round(time.time() - cached[0])), behind=behind)


def plan_view(name: str, plan: Plan) -> dict:
    """NAME's PLAN for a page: its API form, each host's commands in a line, what it must be marked."""
    checkpoint = get(name)
    answer = {**plan.as_dict(), "text": plan.describe()}
    hosts = []
    for host, entry in sorted(answer["plan"]["hosts"].items()):
        operations = [
            {"name": operation["name"], "commands": [shown(command) for command in operation["commands"]]}
            for operation in entry.get("operations", [])
        ]
        hosts.append({"name": host, "entry": entry, "operations": operations})
    return {
        "checkpoint": checkpoint,
        "plan": answer,
        "hosts": hosts,
        "needs_approval": checkpoint.approval_required or plan.disruptive,
        "risky": risky(checkpoint) if checkpoint.destructive or plan.disruptive else None,
    }


def plan_card(served: Service, name: str, wait: bool) -> dict:
    """Checkpoint NAME's card on the Plan page."""
    found = showing(served, name, None, wait, f"/live/plan/{name}")
    return {"name": name, "shown": found, "view": plan_view(name, found.plan) if found.plan else None}


@router.get("/plan")
def plan_page(
    request: Request,
    served: Served,
    visitor: SignedIn,
    checkpoint: Annotated[str, Query(max_length=80)] = "",
    wait: Wait = False,
) -> HTMLResponse:
    """Pick a checkpoint (or all of them) and see its plan per host: nothing changes."""
    names = list(NAMES) if checkpoint == "all" else [known_checkpoint(checkpoint)] if checkpoint else []
    cards = [plan_card(served, name, wait) for name in names]
    return page(request, "plan.html", visitor, names=NAMES, chosen=checkpoint, cards=cards)


@router.get("/live/plan/{name}")
def plan_live(request: Request, name: str, served: Served, visitor: SignedIn) -> HTMLResponse:
    """Checkpoint NAME's card with a plan made now, for static/console.js to swap in."""
    return page(request, "plan_live.html", visitor, card=plan_card(served, known_checkpoint(name), wait=True))


def approval_context(served: Service, visitor, name: str, found: Shown) -> dict:
    """What NAME's approval page (and its live part) shows to VISITOR: who asked, and plan FOUND (nothing of
    it while it is being made)."""
    asked = approval_requests(served, name)
    who = {"name": name, "asked": asked, "asked_by_me": any(e["actor"] == visitor.name for e in asked)}
    if found.plan is None:
        return {**who, "shown": found, "info": None, "view": None, "acknowledge": False}
    return {
        **who,
        "shown": found,
        "info": approval_info(served, name, found.plan),
        "view": plan_view(name, found.plan),
        "acknowledge": needs_risk_acknowledgement(get(name), found.plan),
    }


def approval_requests(served: Service, name: str) -> list[dict]:
    """Who asked for an approval of NAME (the API's and the CLI's "approval requested" events), newest first."""
    asked = [
        {"actor": event.actor, "at": event.at, "details": event.details}
        for event in served.db().audit.events(2000)
        if event.event == "approval requested" and event.target == name
    ]
    return list(reversed(asked))[:5]


def approvable(name: str) -> str:
    """NAME, a checkpoint approved on its own page; 404 for an action (its page is under /actions/)."""
    name = known_checkpoint_or_action(name)
    if name in ACTION_NAMES:
        raise ApiError(404, "NOT_FOUND", f"{name} is approved with its arguments: open it at /actions/{name}")
    return name


@router.get("/approvals/{name}")
def approval_page(
    request: Request,
    name: str,
    served: Served,
    visitor: SignedIn,
    done: Annotated[str, Query(max_length=40)] = "",
    wait: Wait = False,
) -> HTMLResponse:
    """The plan being approved, who asked, separation of duties, the approvals; approve, reject, revoke."""
    name = approvable(name)
    every = Approvals(served.db(), served.separation_of_duties).all(name)
    found = showing(served, name, None, wait, f"/live/approvals/{name}")
    return page(
        request,
        "approval.html",
        visitor,
        checkpoint=get(name),
        every=list(reversed(every))[:20],
        done=done,
        **approval_context(served, visitor, name, found),
    )


@router.get("/live/approvals/{name}")
def approval_live(request: Request, name: str, served: Served, visitor: SignedIn) -> HTMLResponse:
    """NAME's plan and approve/reject forms with a plan made now, for static/console.js to swap in."""
    name = approvable(name)
    found = showing(served, name, None, True, "")
    return page(request, "approval_live.html", visitor, **approval_context(served, visitor, name, found))


# Day-2 actions: one page each, their arguments in the query, approved and run from the page ------------


@dataclass(frozen=True)
class Action:
    """A day-2 action as the console offers it: how its arguments become the API's request and the plan's data."""

    name: str
    title: str
    request: type[BaseModel]
    fields: Callable[[dict[str, str]], dict]  # the query's arguments as the request's fields
    data: Callable[[Service, BaseModel], dict[str, str]]  # the request as the action's plan data


ACTIONS = {
    actions.REMOVE_NODE: Action(
        actions.REMOVE_NODE,
        "Remove a worker",
        models.RemoveNodeRequest,
        lambda args: {"hosts": [args.get("host", "")]},
        lambda served, body: actions.arguments(body),
    ),
    actions.ROLLBACK: Action(
        actions.ROLLBACK,
        "Roll back",
        models.RollbackRequest,
        lambda args: {"to": args.get("to") or None},
        actions.rollback_data,
    ),
    DESTROY: Action(
        DESTROY,
        "Destroy the cluster",
        models.DestroyRequest,
        lambda args: {"purge_data": ticked(args, "purge_data"), "forget_secrets": ticked(args, "forget_secrets")},
        lambda served, body: destroy_data(body.purge_data, body.forget_secrets),
    ),
}
ARGUMENTS = ("host", "to", "purge_data", "forget_secrets")  # every action's query arguments, together


def known_action(name: str) -> Action:
    if name not in ACTIONS:
        raise ApiError(404, "NOT_FOUND", f"no action {name[:80]!r}; the console offers {', '.join(ACTIONS)}")
    return ACTIONS[name]


def action_request(action: Action, args: dict[str, str]) -> BaseModel:
    """ARGS (a query's or a form's) as ACTION's API request; 422 naming what is wrong."""
    return body_of(action.request, **action.fields(args))


def arguments_of(request: Request) -> dict[str, str]:
    """The action arguments a page's query names, and nothing else (they go into links and hidden fields)."""
    return {key: request.query_params[key] for key in ARGUMENTS if request.query_params.get(key)}


def action_context(served: Service, action: Action, args: dict[str, str], wait: bool) -> dict:
    """Everything an action's page (or its live part) shows for ARGS; a rollback's target is pinned in them."""
    data = action.data(served, action_request(action, args))
    if action.name == actions.ROLLBACK:  # approve and run go back to the run this plan was made for
        args = {**args, "to": data["rollback_to"]}
    query = urlencode(args)
    found = showing(served, action.name, data, wait, f"/live/actions/{action.name}?{query}")
    valid = [a for a in Approvals(served.db(), served.separation_of_duties).all(action.name) if a["status"] == "valid"]
    checkpoint = get(action.name)
    return {
        "action": action,
        "checkpoint": checkpoint,
        "args": args,
        "query": query,
        "shown": found,
        "approvals": valid,
        "recorded": recorded_runs(served),
        "needs_approval": bool(found.plan) and needs_approval(checkpoint, found.plan),
        "acknowledge": bool(found.plan) and needs_risk_acknowledgement(checkpoint, found.plan),
    }


def recorded_runs(served: Service) -> list[str]:
    """The runs a rollback can go back to (their recorded specs), newest first."""
    from deploys.recorded_specs import recorded_runs as recorded

    return list(reversed(recorded(served.state_dir)))[:50]


def action_answer(
    request: Request, served: Service, visitor, action: Action, args: dict[str, str], wait: bool, done: str = ""
) -> HTMLResponse:
    """ACTION's page for ARGS; arguments it refuses (or nothing to roll back to) are said on it, with the choices."""
    try:
        context = action_context(served, action, args, wait)
    except ApiError as error:
        context = {"action": action, "checkpoint": get(action.name), "args": args, "query": urlencode(args)}
        context.update(shown=Shown(None, problem=error.message), recorded=recorded_runs(served), approvals=[])
    return page(request, "action.html", visitor, done=done, **context)


@router.get("/actions/{name}")
def action_page(
    request: Request,
    name: str,
    served: Served,
    visitor: SignedIn,
    done: Annotated[str, Query(max_length=40)] = "",
    wait: Wait = False,
) -> HTMLResponse:
    """A day-2 action for the query's arguments: its plan, its valid approvals; approve and run from here."""
    return action_answer(request, served, visitor, known_action(name), arguments_of(request), wait, done)


@router.get("/live/actions/{name}")
def action_live(request: Request, name: str, served: Served, visitor: SignedIn) -> HTMLResponse:
    """The action's plan and forms with a plan made now, for static/console.js to swap in."""
    context = action_context(served, known_action(name), arguments_of(request), wait=True)
    return page(request, "action_live.html", visitor, **context)


@router.get("/nodes/{name}/removal")
def removal_page(request: Request, name: str, served: Served, visitor: SignedIn, wait: Wait = False) -> HTMLResponse:
    """Removing this worker: the remove-node action's page for it."""
    return action_answer(request, served, visitor, ACTIONS[actions.REMOVE_NODE], {"host": name}, wait)
