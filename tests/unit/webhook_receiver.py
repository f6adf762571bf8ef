"""A real HTTP receiver on 127.0.0.1 for the webhook tests: records what it is sent, answers as told, and
can be stopped and started again on the same port (a receiver that was down)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    """ANSWER: "ok" (204), "500", "slow" (answers after SLOW_S), "redirect" (302 to /elsewhere)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer = "ok"
        self.slow_s = 2.0
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/elsewhere":
                    receiver.redirected = True
                receiver.received.append((dict(self.headers), raw))
                if receiver.answer == "slow":
                    time.sleep(receiver.slow_s)
                code = {"ok": 204, "500": 500, "redirect": 302, "slow": 204}[receiver.answer]
                self.send_response(code)
                if code == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.redirected = False
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def documents(self) -> list[dict]:
        return [json.loads(raw) for _headers, raw in self.received]

    def types(self) -> list[str]:
        return [document["type"] for document in self.documents()]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"received {len(self.received)} of {count}: {self.types()}"


@pytest.fixture
def receiver():
    """A started receiver, stopped after the test (the test files import this fixture)."""
    started = Receiver()
    yield started
    if started.server is not None:
        started.stop()
