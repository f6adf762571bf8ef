"""Monitoring: the cluster's metrics through the configured Prometheus, and Grafana's dashboards."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from raydeploy.api import models
from raydeploy.api.context import Served, Viewer
from raydeploy.api.errors import ApiError, json_errors
from raydeploy.api.monitoring import UpstreamError, alerts, federate, grafana_dashboards, provisioned_dashboards

router = APIRouter(prefix="/api/v1/monitoring", tags=["Monitoring"])
Selector = Annotated[str, Query(max_length=400, description='A series selector, e.g. {job="ray"} or up')]


def upstream(error: UpstreamError) -> ApiError:
    return ApiError(error.status, error.error, str(error))


@router.get(
    "/prometheus",
    response_class=PlainTextResponse,
    responses=json_errors("text/plain", "Metrics in Prometheus' text format"),
)
def prometheus_metrics(served: Served, _: Viewer, match: Selector = '{job=~".+"}') -> PlainTextResponse:
    """The latest samples of the cluster's series, in Prometheus' text format, from the configured
    Prometheus' /federate (never from an address in the request)."""
    from validate.http_checks import prometheus_access

    cluster = served.loaded().cluster
    if not cluster.monitoring[0].settings.prometheus_enabled:
        raise ApiError(404, "NOT_DEPLOYED", "Prometheus is not deployed on this cluster (prometheus_enabled)")
    try:
        return PlainTextResponse(federate(prometheus_access(cluster), match), media_type="text/plain")
    except UpstreamError as error:
        raise upstream(error) from None


@router.get("/alerts", response_model=list[models.Alert])
def prometheus_alerts(served: Served, _: Viewer) -> list[dict]:
    """The alerts the configured Prometheus has pending or firing (firing first); 404 when it is not deployed."""
    from validate.http_checks import prometheus_access

    cluster = served.loaded().cluster
    if not cluster.monitoring[0].settings.prometheus_enabled:
        raise ApiError(404, "NOT_DEPLOYED", "Prometheus is not deployed on this cluster (prometheus_enabled)")
    try:
        return alerts(prometheus_access(cluster))
    except UpstreamError as error:
        raise upstream(error) from None


@router.get("/grafana/dashboards", response_model=list[models.Dashboard])
def dashboards(served: Served, _: Viewer) -> list[dict]:
    """Grafana's dashboards (the configured Grafana's search API); 404 when Grafana is not deployed."""
    from validate.http_checks import grafana_access
    from validate.runner import SecretReader

    cluster = served.loaded().cluster
    settings = cluster.monitoring[0].settings
    if not settings.grafana_enabled:
        why = settings.monitoring_off_reason or (
            "grafana_enabled is false on the monitoring host; set grafana_enabled: true in its host data "
            "and deploy monitoring-deployment"
        )
        raise ApiError(
            404,
            "NOT_DEPLOYED",
            f"Grafana is not deployed on this cluster: {why}",
            {"provisioned_when_deployed": provisioned_dashboards()},
        )
    try:
        password = SecretReader(cluster)("grafana-admin-password")
    except Exception:
        raise ApiError(
            503, "SECRET_MISSING", "the Grafana admin password is not in the state directory; deploy first"
        ) from None
    try:
        return grafana_dashboards(grafana_access(cluster), password)
    except UpstreamError as error:
        raise upstream(error) from None
