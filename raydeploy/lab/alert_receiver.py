"""An HTTP receiver for Alertmanager's webhook notices, on this machine's address in a lab's network.

The lab's hosts reach this machine at their network's gateway address, and only they do: the
receiver listens there (never on a wider address), records every notice with the time it arrived,
and answers 200. The lab tests and the bench use it to see what Alertmanager delivers.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from raydeploy.lab.engine import Engine
from raydeploy.lab.lifecycle import Lab

MAX_BODY = 1024 * 1024


def gateway_address(lab_name: str, engine: Engine | None = None) -> str:
    """This machine's address in lab LAB_NAME's network: where its hosts reach this machine."""
    network = (engine or Engine()).inspect("network", Lab(lab_name, progress=lambda _: None).network)
    if network is None:
        raise RuntimeError(f"lab {lab_name} has no network; run `raydeploy lab up` first")
    config = network["IPAM"]["Config"][0]
    # Docker gives a bridge network made with only --subnet the subnet's first address.
    return config.get("Gateway") or str(ipaddress.ip_network(config["Subnet"])[1])


@dataclass(frozen=True)
class Notice:
    """One webhook notice: when it arrived (time.time()), and Alertmanager's JSON body."""

    received_at: float
    body: dict

    @property
    def status(self) -> str:
        return str(self.body.get("status"))

    def alert_names(self) -> set[str]:
        return {str(alert.get("labels", {}).get("alertname")) for alert in self.body.get("alerts", [])}


class AlertReceiver:
    """Listens on ADDRESS (a port of its own) until closed; `url(path)` is what Alertmanager is given."""

    def __init__(self, address: str) -> None:
        self.notices: list[Notice] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((address, 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/alerts") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {"unparsed": True}
                with receiver._lock:
                    receiver.notices.append(Notice(time.time(), body if isinstance(body, dict) else {}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet: the tests print what matters
                pass

        return Handler

    def wait_for(self, matches: Callable[[Notice], bool], timeout_s: float, after: float = 0.0) -> Notice:
        """The first notice received after AFTER (time.time()) that MATCHES; AssertionError after TIMEOUT_S."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                found = next((n for n in self.notices if n.received_at >= after and matches(n)), None)
            if found:
                return found
            time.sleep(0.2)
        seen = [(n.status, sorted(n.alert_names())) for n in self.notices]
        raise AssertionError(f"no matching webhook notice within {timeout_s} s; received: {seen}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def is_notice(alert: str, status: str) -> Callable[[Notice], bool]:
    """Matches a notice of STATUS (firing, resolved) carrying ALERT."""
    return lambda notice: notice.status == status and alert in notice.alert_names()
