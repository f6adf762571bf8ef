"""Sending the webhook outbox: in order per endpoint, retried with exponential backoff for a day.

An endpoint's deliveries go out oldest first; one that fails holds back the later ones of that
endpoint (a receiver never sees "run succeeded" before "run started"), and is tried again after 2 s,
4 s, 8 s ... up to an hour between tries, until a day after it was queued; then it is abandoned and
the next one goes. Success is a 2xx answer. A redirect is not followed (the signed body would go
where the receiver points, past the SSRF guard) and counts as a failure, as do other answers,
refused connections and a receiver silent for longer than the timeout. Every attempt is written to
the delivery's row: `raydeploy webhooks deliveries` shows them.

Who sends: a deliverer thread per state directory in a process that queued something (the CLI: the
first try right after the event, and a last pass before the command exits) or that serves the API
(`raydeploy api` starts one at startup, so what was queued before a restart goes out). A lock file
(`webhooks.lock`, flock) lets one process at a time send a state directory's queue, which keeps the
order when the CLI and the API run side by side. `raydeploy webhooks deliver` sends without the API.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from raydeploy import __version__, webhook_outbox
from raydeploy.audit import now_utc
from raydeploy.state import StateStore
from raydeploy.webhook_urls import Target, UrlRefused, checked
from raydeploy.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, body, read_secret, signature

DEFAULT_TIMEOUT_S = 10.0
GIVE_UP_AFTER = timedelta(days=1)
FIRST_RETRY_S = 2
LONGEST_RETRY_S = 3600
POLL_S = 0.2  # how often the queue is read for retries and for what other processes queued
QUICK_S = 0.01  # ... and for HURRY_S after this process queued something
HURRY_S = 0.5
ANSWER_READ_BYTES = 65536


class Deliverer:
    """A thread that sends DIRECTORY's queue whenever something is queued, and polls for retries."""

    def __init__(self, directory: Path, timeout: float = DEFAULT_TIMEOUT_S):
        self.directory, self.timeout = Path(directory), timeout
        self.wake, self.stopping = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.loop, name=f"webhooks {directory}", daemon=True)

    def loop(self) -> None:
        """Send, then wait for a wake-up or the next poll. A wake-up comes as an event is queued, before
        its transaction commits, so for a while after one the queue is read every QUICK_S."""
        store = StateStore(self.directory)
        hurry_until = 0.0
        try:
            while True:
                with contextlib.suppress(Exception):  # a broken pass is tried again at the next poll
                    drain(store, self.timeout)
                if self.stopping.is_set():
                    return
                if self.wake.wait(QUICK_S if time.monotonic() < hurry_until else POLL_S):
                    self.wake.clear()
                    hurry_until = time.monotonic() + HURRY_S
        finally:
            store.close()

    def stop(self) -> None:
        """One last pass (what was queued just now goes out), then the thread ends."""
        self.stopping.set()
        self.wake.set()
        self.thread.join(self.timeout + 5)


RUNNING: dict[Path, Deliverer] = {}
RUNNING_LOCK = threading.Lock()


def start(directory: Path) -> Deliverer:
    """DIRECTORY's deliverer in this process, started if it was not running; woken."""
    key = Path(directory).resolve()
    with RUNNING_LOCK:
        deliverer = RUNNING.get(key)
        if deliverer is None:
            deliverer = RUNNING[key] = Deliverer(key)
            deliverer.thread.start()
    deliverer.wake.set()
    return deliverer


def stop_all() -> None:
    """End this process's deliverers, each after a last pass (a command's events go out before it exits)."""
    with RUNNING_LOCK:
        running = list(RUNNING.values())
        RUNNING.clear()
    for deliverer in running:
        deliverer.stop()


def drain(store: StateStore, timeout: float = DEFAULT_TIMEOUT_S, retry_now: bool = False) -> list[dict]:
    """Send every endpoint's due deliveries (with RETRY_NOW, also those waiting for their next try)."""
    with sender_lock(store.directory) as mine:
        if not mine:
            return []
        endpoints = store.db.execute("SELECT * FROM webhook_endpoints WHERE removed_at IS NULL ORDER BY created_at")
        done = []
        for endpoint in [dict(row) for row in endpoints.fetchall()]:
            done += drain_endpoint(store, endpoint, timeout, retry_now)
        return done


def drain_endpoint(store: StateStore, endpoint: dict[str, Any], timeout: float, retry_now: bool) -> list[dict]:
    """Send ENDPOINT's due deliveries in order, until one fails; what each attempt did."""
    done = []
    while True:
        row = store.db.execute(OLDEST_PENDING, (endpoint["id"],)).fetchone()
        if row is None or (not retry_now and row["next_attempt_at"] > now_utc()):
            return done
        delivery = dict(row)
        attempt = send(store.directory, endpoint, delivery, timeout)
        status = record(store, delivery, attempt)
        done.append(
            {"endpoint": endpoint["id"], "event": delivery["id"], "type": delivery["type"], "status": status}
            | {"code": attempt.code, "error": attempt.error}
        )
        if status == "pending":
            return done


OLDEST_PENDING = """
SELECT d.seq, d.attempts, d.next_attempt_at, d.created_at, e.id, e.type, e.at, e.actor, e.target, e.details
FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
WHERE d.endpoint_id=? AND d.status='pending' ORDER BY d.seq LIMIT 1
"""


def send(directory: Path, endpoint: dict[str, Any], event: dict[str, Any], timeout: float) -> Attempt:
    """Sign and post EVENT to ENDPOINT, its URL checked again (a name may resolve elsewhere by now)."""
    try:
        target = checked(endpoint["url"], bool(endpoint["allow_private"]))
    except UrlRefused as error:
        return Attempt(None, str(error))
    data = body(endpoint, event)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"raydeploy-webhooks/{__version__}",
        "X-Raydeploy-Event": event["type"],
        "X-Raydeploy-Delivery": event["id"],
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(read_secret(directory, endpoint["id"]), timestamp, data),
    }
    return post(target, data, headers, timeout)


def post(target: Target, data: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    """POST DATA to TARGET once; never follows a redirect."""
    default_port = {"http": 80, "https": 443}[target.scheme]
    name = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 address, as URLs write it
    host = name if target.port == default_port else f"{name}:{target.port}"
    connection = None
    try:
        connection = connected(target, timeout)
        connection.request("POST", target.path, body=data, headers={"Host": host, **headers})
        response = connection.getresponse()
        response.read(ANSWER_READ_BYTES)
    except TimeoutError:
        return Attempt(None, f"no answer within {timeout:g} s (timed out)")
    except (OSError, http.client.HTTPException) as error:
        return Attempt(None, f"no answer: {type(error).__name__}: {error}")
    finally:
        if connection is not None:
            connection.close()
    if 300 <= response.status < 400:
        where = response.getheader("Location", "")
        return Attempt(response.status, f"redirect to {where[:200]!r} not followed")
    if not 200 <= response.status < 300:
        return Attempt(response.status, f"answered {response.status} {response.reason}")
    return Attempt(response.status, None)


def connected(target: Target, timeout: float) -> http.client.HTTPConnection:
    """A connection to the first of TARGET's checked addresses that takes one (a name may have an IPv6 and
    an IPv4 address, and only one of them answer); the last one's error when none does."""
    problem: OSError = OSError(f"{target.host} has no address")
    for address in target.addresses:
        if target.scheme == "https":
            connection: http.client.HTTPConnection = PinnedHTTPSConnection(target, address, timeout)
        else:
            connection = http.client.HTTPConnection(address, target.port, timeout=timeout)
        try:
            connection.connect()
            return connection
        except OSError as error:
            connection.close()
            problem = error
    raise problem


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address the SSRF guard checked, with the certificate checked for the URL's host."""

    def __init__(self, target: Target, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


@dataclass(frozen=True)
class Attempt:
    """How one post went: the HTTP status (None when there was no answer) and, when it failed, why."""

    code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def record(store: StateStore, delivery: dict[str, Any], attempt: Attempt) -> str:
    """Write ATTEMPT to DELIVERY's row; the delivery's status now (delivered, pending or abandoned)."""
    now = datetime.now(UTC)
    attempts = delivery["attempts"] + 1
    if attempt.ok:
        status, next_at = "delivered", delivery["next_attempt_at"]
    elif now - parse_time(delivery["created_at"]) >= GIVE_UP_AFTER:
        status, next_at = "abandoned", delivery["next_attempt_at"]
    else:
        status, next_at = "pending", format_time(now + timedelta(seconds=retry_delay_s(attempts)))
    with store.transaction():
        store.db.execute(
            "UPDATE webhook_deliveries SET status=?, attempts=?, last_code=?, last_error=?, last_attempt_at=?,"
            " next_attempt_at=?, delivered_at=? WHERE seq=?",
            (
                status,
                attempts,
                attempt.code,
                attempt.error,
                format_time(now),
                next_at,
                format_time(now) if attempt.ok else None,
                delivery["seq"],
            ),
        )
    return status


def retry_delay_s(attempts: int) -> int:
    """How long to wait after the ATTEMPTS-th failed try: doubling from 2 s, at most an hour."""
    return min(FIRST_RETRY_S * 2 ** (attempts - 1), LONGEST_RETRY_S)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def sender_lock(directory: Path) -> Iterator[bool]:
    """Whether this process may send DIRECTORY's queue now (another may be sending it: then not)."""
    descriptor = os.open(Path(directory) / "webhooks.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def deliveries(store: StateStore, endpoint_id: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest LIMIT deliveries (of ENDPOINT_ID), newest first: the delivery log."""
    query = (
        "SELECT d.seq, d.endpoint_id, d.event_id, e.type, d.status, d.attempts, d.last_code, d.last_error,"
        " d.last_attempt_at, CASE WHEN d.status='pending' THEN d.next_attempt_at END AS next_attempt_at,"
        " d.created_at, d.delivered_at FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
    )
    parameters: tuple = ()
    if endpoint_id:
        query, parameters = query + " WHERE d.endpoint_id=?", (endpoint_id,)
    rows = store.db.execute(query + " ORDER BY d.seq DESC LIMIT ?", (*parameters, limit)).fetchall()
    return [dict(row) for row in rows]


def delivery(store: StateStore, endpoint_id: str, event_id: str) -> dict[str, Any]:
    row = store.db.execute(
        "SELECT * FROM webhook_deliveries WHERE endpoint_id=? AND event_id=?", (endpoint_id, event_id)
    ).fetchone()
    return dict(row)


webhook_outbox.QUEUED_LISTENERS.append(start)
