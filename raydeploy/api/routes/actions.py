"""Day-2 actions over HTTP: destroy. Requested by an operator, approved by an approver
(POST /api/v1/approvals/destroy with the same data and acknowledge_risks), run in the background
through the same runner, lock, approvals and audit trail as `raydeploy destroy`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from raydeploy.api import models, runs
from raydeploy.api.context import Operator, Served
from raydeploy.api.errors import now
from raydeploy.api.routes.checkpoints import take_lock
from raydeploy.destroy import ACTION, destroy_data, run_destroy
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
    return {
        "checkpoint": ACTION,
        "execution_id": run_id,
        "status": "STARTED",
        "started_at": now(),
        "message": f"run {run_id} started {ACTION}; follow its log at /api/v1/runs/{run_id}/log; if it ends "
        f"awaiting-approval, an approver sends POST /api/v1/approvals/{ACTION} with data {data}",
        "run_url": f"/api/v1/runs/{run_id}",
        "log_url": f"/api/v1/runs/{run_id}/log",
    }
