"""The monitoring endpoints: metrics through the configured Prometheus, and Grafana's dashboards.

Both upstreams are reached only at the address the inventory configures, never at one taken from
the request. What they answer is untrusted: sizes are capped, redirects are not followed, types
are checked field by field, and nothing of it is echoed into an error but a short, cleaned excerpt.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

TIMEOUT_S = 5.0
MAX_METRICS_BYTES = 8 * 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024
# A PromQL series selector, as federation takes it: {label="value",...} or name{...}. No URL parts.
SELECTOR = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$|^[a-zA-Z_:]*[a-zA-Z0-9_:]*\{[^{}\x00-\x1f]{0,400}\}$")
DASHBOARDS = Path(__file__).resolve().parents[2] / "templates" / "grafana" / "dashboards"


class UpstreamError(Exception):
    """Prometheus or Grafana did not give a usable answer; the message says which and why."""

    def __init__(self, message: str, status: int = 503, error: str = "UPSTREAM_UNAVAILABLE"):
        super().__init__(message)
        self.status, self.error = status, error


def _clean(text: str, limit: int = 200) -> str:
    return re.sub(r"[^\x20-\x7e]", "?", text)[:limit]


def _read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    body = b""
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > limit:
            response.close()
            raise UpstreamError(f"{what} answered more than {limit} bytes; refused", 502, "UPSTREAM_INVALID")
    return body


def federate(base_url: str, match: str) -> str:
    """The latest samples of the series MATCH selects, in Prometheus' text format, from /federate."""
    if not SELECTOR.match(match):
        raise UpstreamError(
            f'match {_clean(match, 80)!r} is not a series selector like {{job="ray"}} or up', 400, "INVALID_REQUEST"
        )
    url = f"{base_url}/federate"
    try:
        response = requests.get(url, params={"match[]": match}, timeout=TIMEOUT_S, allow_redirects=False, stream=True)
    except requests.RequestException as error:
        raise UpstreamError(f"Prometheus at {base_url} cannot be reached: {_clean(str(error))}") from None
    with response:
        if response.status_code == 400:
            raise UpstreamError(f"Prometheus refused the selector {_clean(match, 80)!r}", 400, "INVALID_REQUEST")
        if response.status_code != 200:
            raise UpstreamError(f"Prometheus at {base_url} answered {response.status_code} on /federate")
        body = _read_capped(response, MAX_METRICS_BYTES, f"Prometheus at {base_url}")
    return body.decode("utf-8", errors="replace")


def fetched_json(url: str, who: str, **options) -> Any:
    """GET URL of WHO ("Grafana at http://..."), its answer capped and parsed: the JSON, or an UpstreamError that
    says what went wrong (not reachable, another status, not JSON). Redirects are not followed."""
    try:
        response = requests.get(url, timeout=TIMEOUT_S, allow_redirects=False, stream=True, **options)
    except requests.RequestException as error:
        raise UpstreamError(f"{who} cannot be reached: {_clean(str(error))}") from None
    with response:
        if response.status_code != 200:
            raise UpstreamError(f"{who} answered {response.status_code} on {urlsplit(url).path}")
        body = _read_capped(response, MAX_JSON_BYTES, who)
    try:
        return json.loads(body)
    except ValueError:
        raise UpstreamError(f"{who} answered something that is not JSON", 502, "UPSTREAM_INVALID") from None


def grafana_dashboards(base_url: str, password: str) -> list[dict[str, str]]:
    """Grafana's dashboards from its search API, each checked: uid and title strings, a /d/ path."""
    who = f"Grafana at {base_url}"
    items = fetched_json(
        f"{base_url}/api/search", who, params={"type": "dash-db", "limit": 500}, auth=("admin", password)
    )
    if not isinstance(items, list):
        raise UpstreamError(
            f"Grafana at {base_url} answered a {type(items).__name__}, not a list", 502, "UPSTREAM_INVALID"
        )
    dashboards = []
    for item in items:
        if not isinstance(item, dict):
            continue
        uid, title, path = item.get("uid"), item.get("title"), item.get("url")
        if not (isinstance(uid, str) and isinstance(title, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", uid)):
            continue
        path = (
            path
            if isinstance(path, str) and re.fullmatch(r"/d/[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_.-]*)?", path)
            else f"/d/{uid}"
        )
        tags = (
            [tag for tag in item.get("tags", []) if isinstance(tag, str)] if isinstance(item.get("tags"), list) else []
        )
        dashboards.append(
            {
                "id": uid,
                "title": _clean(title, 200),
                "url": f"{base_url}{path}",
                "description": _clean(", ".join(tags), 200) if tags else "",
            }
        )
    return dashboards


def alerts(base_url: str) -> list[dict[str, str]]:
    """Prometheus' pending and firing alerts (its /api/v1/alerts), each checked and cleaned, firing first."""
    answer = fetched_json(f"{base_url}/api/v1/alerts", f"Prometheus at {base_url}")
    try:
        items = answer["data"]["alerts"]
        if not isinstance(items, list):
            raise TypeError
    except (KeyError, TypeError):
        raise UpstreamError(f"Prometheus at {base_url} answered no list of alerts", 502, "UPSTREAM_INVALID") from None
    found = []
    for item in items:
        labels = item.get("labels") if isinstance(item, dict) else None
        if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str):
            continue
        annotations = item.get("annotations") if isinstance(item.get("annotations"), dict) else {}
        found.append(
            {
                "name": _clean(labels["alertname"], 120),
                "state": _clean(str(item.get("state", "")), 20),
                "severity": _clean(str(labels.get("severity", "")), 40),
                "summary": _clean(str(annotations.get("summary", annotations.get("description", ""))), 300),
                "instance": _clean(str(labels.get("instance", labels.get("node", ""))), 120),
                "active_at": _clean(str(item.get("activeAt", "")), 40),
            }
        )
    return sorted(found, key=lambda alert: (alert["state"] != "firing", alert["name"], alert["instance"]))


def provisioned_dashboards() -> list[dict[str, str]]:
    """The dashboards raydeploy provisions into Grafana (uid and title from templates/grafana/dashboards)."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        data = json.loads(path.read_text())
        found.append({"id": data.get("uid", path.stem), "title": data.get("title", path.stem)})
    return found
