"""The `webhooks` scenario: from a raydeploy event to its signed delivery at a real HTTP receiver on loopback.

No lab: a state directory of its own, an endpoint added with `raydeploy webhooks add --allow-private`, and
a receiver (http.server) in this process on 127.0.0.1. Two paths, each event timed from just before the
audit event (and so its outbox row) is committed to the moment the receiver has the whole request:

- `webhook_via_api`: the event is written by this process, which does not send it (it never imports the
  deliverer); a real `raydeploy api` process sends it from its background thread, as it sends what the CLI
  left queued or what another process wrote. This path waits for the API's next poll.
- `webhook_in_process`: the process that writes the event sends it (as a CLI command does), woken at once.

Target (issue 19): under 1 s median.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.api import free_port, wait_until_up
from bench.measure import RAYDEPLOY, REPO, BenchError, figure, run

EVENTS_PER_RUN = 20
GAP_S = 0.1


class Receiver:
    """Notes when each event's request arrived, by the target the event names."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.arrived[json.loads(body)["details"]["target"]] = time.perf_counter()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, target: str, timeout_s: float = 30) -> float:
        deadline = time.monotonic() + timeout_s
        while target not in self.arrived:
            if time.monotonic() > deadline:
                raise BenchError(f"event {target} was not delivered within {timeout_s:.0f} s")
            time.sleep(0.001)
        return self.arrived[target]


def latencies(store, receiver: Receiver, label: str, count: int) -> list[float]:
    """COUNT events written to STORE, GAP_S apart: each one's seconds to its arrival at RECEIVER."""
    samples = []
    for number in range(count):
        target = f"{label}-{number}"
        started = time.perf_counter()
        store.audit.append("bench", "run started", target)
        samples.append(receiver.wait(target) - started)
        time.sleep(GAP_S)
    return samples


def via_api(state: Path, receiver: Receiver, env: dict[str, str], count: int) -> list[float]:
    """Events this process writes and a real `raydeploy api` sends."""
    from raydeploy.state import StateStore

    if "raydeploy.webhook_delivery" in sys.modules:
        raise BenchError("the bench process would send its own events: the API path needs it not to")
    port = free_port()
    server = subprocess.Popen(
        [RAYDEPLOY, "api", "--port", str(port), "--state-dir", str(state)],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}")
        store = StateStore(state)
        return latencies(store, receiver, "api", count)
    finally:
        server.terminate()
        server.wait(30)


def in_process(state: Path, receiver: Receiver, count: int) -> list[float]:
    """Events this process writes and sends itself, as a CLI command does."""
    from raydeploy import webhook_delivery
    from raydeploy.state import StateStore

    try:
        return latencies(StateStore(state), receiver, "cli", count)
    finally:
        webhook_delivery.stop_all()


def scenario_webhooks(runs: int) -> dict:
    receiver = Receiver()
    count = EVENTS_PER_RUN * runs
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as scratch:
        env = {"RAYDEPLOY_AUDIT_KEY_DIR": f"{scratch}/keys", "RAYDEPLOY_STATE_DIR": f"{scratch}/state"}
        os.environ.update(env)  # this process writes events into the same trail
        state = Path(scratch) / "state"
        run([RAYDEPLOY, "webhooks", "add", receiver.url, "--allow-private", "--state-dir", str(state)], env)
        api_samples = via_api(state, receiver, env, count)
        cli_samples = in_process(state, receiver, count)
    receiver.server.shutdown()
    return {
        "figures": {
            "webhook_via_api": figure([s * 1000 for s in api_samples], "ms"),
            "webhook_in_process": figure([s * 1000 for s in cli_samples], "ms"),
        }
    }
