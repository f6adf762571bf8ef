"""Webhook endpoints and their delivery log (admin only): the same functions as `raydeploy webhooks`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from raydeploy import webhook_delivery, webhooks
from raydeploy.api import models
from raydeploy.api.context import Admin, Served
from raydeploy.api.errors import ApiError

router = APIRouter(prefix="/api/v1/webhooks", tags=["Webhooks"])
ENDPOINT_ID = r"^[0-9a-f]{12}$"


@router.get("", response_model=list[models.WebhookEndpoint])
def list_webhooks(served: Served, _: Admin) -> list[dict]:
    """The endpoints (never their secrets)."""
    return webhooks.endpoints(served.db())


@router.post("", status_code=201, response_model=models.WebhookCreated)
def add_webhook(body: models.WebhookRequest, served: Served, identity: Admin) -> dict:
    """Add an endpoint; the answer carries its signing secret, the one time it is given out. A URL on
    loopback, link-local or private addresses is 400 unless `allow_private` (SSRF guard)."""
    try:
        endpoint, secret = webhooks.add(
            served.db(),
            body.url,
            identity.name,
            body.format,
            list(body.events),
            body.cluster or webhooks.inventory_cluster(served.inventory, str(served.state_dir)),
            body.console_url,
            body.allow_private,
        )
    except webhooks.WebhookError as error:
        raise ApiError(400, "INVALID_REQUEST", str(error)) from None
    return {**endpoint, "secret": secret}


@router.get("/deliveries", response_model=list[models.WebhookDelivery])
def list_deliveries(
    served: Served,
    _: Admin,
    endpoint: Annotated[str | None, Query(pattern=ENDPOINT_ID, description="Only this endpoint's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict]:
    """The delivery log, newest first: status, attempts, the last answer, the next try."""
    return webhook_delivery.deliveries(served.db(), endpoint, limit)


@router.delete("/{endpoint_id}", response_model=models.WebhookRemoved)
def remove_webhook(endpoint_id: str, served: Served, identity: Admin) -> dict:
    """Remove an endpoint: what it still had queued is cancelled, its secret deleted."""
    try:
        return {"id": endpoint_id, "cancelled": webhooks.remove(served.db(), endpoint_id, identity.name)}
    except webhooks.WebhookError as error:
        raise ApiError(404, "NOT_FOUND", str(error)[:300]) from None


@router.post("/{endpoint_id}/test", status_code=202, response_model=models.WebhookTested)
def test_webhook(endpoint_id: str, served: Served, identity: Admin) -> dict:
    """Queue a `webhook.test` event for this endpoint; the API's deliverer sends it at once."""
    try:
        event_id = webhooks.queue_test(served.db(), endpoint_id, identity.name)
    except webhooks.WebhookError as error:
        raise ApiError(404, "NOT_FOUND", str(error)[:300]) from None
    return {"id": endpoint_id, "event_id": event_id}
