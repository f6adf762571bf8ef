"""Webhook endpoints (add, list, remove) and what a delivery says: its JSON body and its signature.

Each endpoint has its own secret: 32 random bytes made when it is added, shown once, kept like the
other generated secrets (`<state dir>/secrets/webhook-<id>`, mode 0600) and never listed, logged or
audited. A delivery is signed with it, so a receiver can tell raydeploy's posts from anyone else's:

    X-Raydeploy-Timestamp: 1764535200
    X-Raydeploy-Signature-256: sha256=<hex of HMAC-SHA256(secret, f"{timestamp}.{body}")>

where body is the request's raw bytes. The timestamp is part of the signed text, so a receiver that
refuses old timestamps (5 minutes, say) refuses replays. The body (format "json"):

    {"id": "...", "type": "run.failed", "time": "2026-11-30T21:00:00.000000Z", "cluster": "ray",
     "who": "alice", "link": "https://console.example.com/runs/RUN_ID" or null, "details": {...}}

Format "slack" sends `{"text": "..."}`, a readable line a Slack-compatible incoming webhook shows.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from pathlib import Path
from typing import Any

from raydeploy.audit import now_utc
from raydeploy.state import StateStore
from raydeploy.webhook_outbox import EVENT_TYPES, TEST_TYPE, queue
from raydeploy.webhook_urls import UrlRefused, checked

FORMATS = ("json", "slack")
SIGNATURE_HEADER = "X-Raydeploy-Signature-256"
TIMESTAMP_HEADER = "X-Raydeploy-Timestamp"
SHOWN = ("id", "url", "format", "events", "cluster", "console_url", "allow_private", "created_at", "created_by")


class WebhookError(Exception):
    """A webhook setting is wrong or an endpoint is unknown; the message names the setting and the fix."""


def secret_path(directory: Path, endpoint_id: str) -> Path:
    return Path(directory) / "secrets" / f"webhook-{endpoint_id}"


def read_secret(directory: Path, endpoint_id: str) -> str:
    return secret_path(directory, endpoint_id).read_text().strip()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Raydeploy-Signature-256 value: HMAC-SHA256 under SECRET of TIMESTAMP, a dot, and BODY."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def checked_settings(url: str, format: str, events: list[str], console_url: str | None, allow_private: bool) -> None:
    """Every problem with an endpoint's settings, as one WebhookError naming each setting and its fix."""
    problems = []
    try:
        checked(url, allow_private)
    except UrlRefused as error:
        problems.append(str(error))
    if format not in FORMATS:
        problems.append(f"format {format!r}: give one of {', '.join(FORMATS)}")
    unknown = [event for event in events if event not in EVENT_TYPES]
    if unknown:
        problems.append(f"events {', '.join(map(repr, unknown))}: unknown; give any of {', '.join(EVENT_TYPES)}")
    if console_url and not console_url.startswith(("http://", "https://")):
        problems.append(f"console_url {console_url!r}: give the console's base URL, like https://raydeploy.example.com")
    if problems:
        raise WebhookError("; ".join(problems) + "; nothing was added")


def inventory_cluster(inventory: str, state_dir: str) -> str:
    """The inventory head's cluster_name (what Prometheus calls the cluster), or "ray" when it cannot be read."""
    try:
        from validate.inventory import load

        return load(inventory, state_dir).cluster.head.settings.cluster_name
    except Exception:  # an inventory that cannot be read now is no reason to refuse an endpoint
        return "ray"


def add(
    store: StateStore,
    url: str,
    actor: str,
    format: str = "json",
    events: list[str] | None = None,
    cluster: str = "ray",
    console_url: str | None = None,
    allow_private: bool = False,
) -> tuple[dict[str, Any], str]:
    """A new endpoint and its secret (the one time the secret is given out); audited without the secret."""
    events = sorted(set(events or []))
    checked_settings(url, format, events, console_url, allow_private)
    endpoint = {
        "id": uuid.uuid4().hex[:12],
        "url": url.strip(),
        "format": format,
        "events": json.dumps(events),
        "cluster": cluster,
        "console_url": console_url.rstrip("/") if console_url else None,
        "allow_private": int(allow_private),
        "created_at": now_utc(),
        "created_by": actor,
    }
    secret = write_secret(store.directory, endpoint["id"])
    try:
        with store.transaction():
            store.db.execute(
                f"INSERT INTO webhook_endpoints ({', '.join(endpoint)}) VALUES ({', '.join('?' for _ in endpoint)})",
                tuple(endpoint.values()),
            )
            store.audit.append(
                actor, "webhook added", endpoint["id"], url=endpoint["url"], format=format, events=events
            )
    except BaseException:  # no endpoint (the audit key missing, say): no secret left behind for it
        secret_path(store.directory, endpoint["id"]).unlink(missing_ok=True)
        raise
    return shown(endpoint), secret


def write_secret(directory: Path, endpoint_id: str) -> str:
    """A new secret for ENDPOINT_ID in a 0600 file of the secrets directory (made 0700, as the deploys do)."""
    path = secret_path(directory, endpoint_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = os.urandom(32).hex()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(value + "\n")
    return value


def shown(endpoint: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of ENDPOINT (never its secret, which is not in the table anyway)."""
    answer = {key: endpoint[key] for key in SHOWN}
    answer["events"] = json.loads(answer["events"]) or list(EVENT_TYPES)
    answer["allow_private"] = bool(answer["allow_private"])
    return answer


def endpoints(store: StateStore) -> list[dict[str, Any]]:
    rows = store.db.execute("SELECT * FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY created_at")
    return [shown(dict(row)) for row in rows.fetchall()]


def endpoint(store: StateStore, endpoint_id: str) -> dict[str, Any]:
    row = store.db.execute(
        "SELECT * FROM webhook_endpoints WHERE id=? AND removed_at IS NULL", (endpoint_id,)
    ).fetchone()
    if row is None:
        known = ", ".join(e["id"] for e in endpoints(store)) or "none"
        raise WebhookError(f"no webhook endpoint {endpoint_id!r} (endpoints: {known}); see `raydeploy webhooks list`")
    return dict(row)


def remove(store: StateStore, endpoint_id: str, actor: str) -> int:
    """Remove ENDPOINT_ID, cancel what it still had queued (the count) and forget its secret; audited."""
    endpoint(store, endpoint_id)
    with store.transaction():
        store.db.execute("UPDATE webhook_endpoints SET removed_at=? WHERE id=?", (now_utc(), endpoint_id))
        cancelled = store.db.execute(
            "UPDATE webhook_deliveries SET status='cancelled' WHERE endpoint_id=? AND status='pending'", (endpoint_id,)
        ).rowcount
        store.audit.append(actor, "webhook removed", endpoint_id, cancelled=cancelled)
    secret_path(store.directory, endpoint_id).unlink(missing_ok=True)
    return cancelled


def queue_test(store: StateStore, endpoint_id: str, actor: str) -> str:
    """Queue a `webhook.test` event for ENDPOINT_ID alone (behind what it already has queued); its event id."""
    endpoint(store, endpoint_id)
    with store.transaction():
        event_id = queue(
            store.db,
            store.directory,
            TEST_TYPE,
            actor,
            endpoint_id,
            {"message": "a test from raydeploy"},
            [endpoint_id],
        )
        store.audit.append(actor, "webhook tested", endpoint_id)
    return event_id


def link(endpoint: dict[str, Any], event: dict[str, Any], details: dict[str, Any]) -> str | None:
    """Where the console shows EVENT's run or approval, when the endpoint knows the console's URL."""
    base = endpoint["console_url"]
    if not base:
        return None
    if event["type"].startswith("approval."):
        return f"{base}/approvals/{event['target']}"
    run_id = details.get("run_id") or (event["target"] if event["type"].startswith(("run.", "lock.")) else None)
    return f"{base}/runs/{run_id}" if run_id else None


def body(endpoint: dict[str, Any], event: dict[str, Any]) -> bytes:
    """The bytes posted to ENDPOINT for EVENT (a webhook_events row): the same bytes on every attempt."""
    details = json.loads(event["details"])
    document = {
        "id": event["id"],
        "type": event["type"],
        "time": event["at"],
        "cluster": endpoint["cluster"],
        "who": event["actor"],
        "link": link(endpoint, event, details),
        "details": {"target": event["target"], **details},
    }
    if endpoint["format"] == "slack":
        document = {"text": slack_text(document)}
    return json.dumps(document, sort_keys=True, ensure_ascii=True).encode()


def slack_text(document: dict[str, Any]) -> str:
    details = document["details"]
    said = ", ".join(f"{key}: {value}" for key, value in details.items() if value not in (None, "", [], {}))
    text = f"[{document['cluster']}] {document['type']} by {document['who']} ({said})"
    return text + (f" <{document['link']}|open in the console>" if document["link"] else "")
