"""The SSH connection to the host being deployed: small commands sent at once, not held back.

pyinfra runs every fact and every check as its own small SSH exec. paramiko leaves Nagle's
algorithm on, so each request waits for the host's delayed ACK (40 ms on Linux): about 48 ms
a command where 6 ms would do (`python -m bench ssh-latency`). OpenSSH's own client turns
Nagle off for the same reason. We set TCP_NODELAY on the connection pyinfra already opened.
"""

from __future__ import annotations

import socket
from typing import Any


def send_without_delay(host: Any) -> bool:
    """Turn Nagle's algorithm off on HOST's SSH socket; False when the connection has none (local, docker)."""
    client = getattr(host.connector, "client", None)
    transport = client.get_transport() if client is not None else None
    sock = getattr(transport, "sock", None)
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True
