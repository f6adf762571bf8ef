"""What Prometheus answers about the Alertmanagers it sends alerts to, read into plain data.

Plain Python, no pyinfra: validation and the lab tests read Prometheus's /api/v1/alertmanagers
through this one parser.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

ALERTMANAGERS_PATH = "/api/v1/alertmanagers"


def active_alertmanagers(answer: str) -> list[str]:
    """The URLs Prometheus sends alerts to, from an answer to ALERTMANAGERS_PATH; ValueError when it is not one.

    .. code:: python

        ["http://127.0.0.1:9093/api/v2/alerts"]
    """
    try:
        found = json.loads(answer)["data"]["activeAlertmanagers"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not Prometheus's list of Alertmanagers: {error!r}") from None
    if not isinstance(found, list):
        raise ValueError("not Prometheus's list of Alertmanagers")
    return [str(item.get("url")) for item in found if isinstance(item, dict) and item.get("url")]


def sends_to_port(urls: list[str], port: int) -> bool:
    """Whether one of URLS (active_alertmanagers) is an Alertmanager on PORT."""
    return any(urlsplit(url).port == port for url in urls)
