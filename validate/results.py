"""What a validation found, and the two ways it is shown: a table for people, JSON for programs.

JSON schema `raydeploy.validation/1` (stable; fields are only ever added):

    {
      "schema": "raydeploy.validation/1",
      "inventory": "inventories/lab.py",
      "scope": "all" | "health" | "<checkpoint name>",
      "started_at": "2026-11-28T15:00:00Z",       # UTC, ISO 8601
      "duration_s": 3.21,
      "ok": true,                                  # no result is "fail" or "unreachable"
      "summary": {"pass": 20, "fail": 0, "not-deployed": 2, "unreachable": 0},
      "results": [
        {"checkpoint": "ray-deployment", "check": "container ray-head", "host": "head",
         "status": "pass" | "fail" | "not-deployed" | "unreachable", "detail": "running ...",
         "duration_s": 0.12}
      ]
    }

`host` is an inventory host name, or "cluster" for checks of the whole cluster (HTTP, smoke job).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from raydeploy.checkpoints import NAMES

SCHEMA = "raydeploy.validation/1"
PASS, FAIL, NOT_DEPLOYED, UNREACHABLE = "pass", "fail", "not-deployed", "unreachable"
STATUSES = (PASS, FAIL, NOT_DEPLOYED, UNREACHABLE)
CLUSTER = "cluster"


@dataclass(frozen=True)
class Result:
    checkpoint: str
    check: str
    host: str
    status: str
    detail: str = ""
    duration_s: float = 0.0


def passed(checkpoint: str, check: str, host: str, detail: str = "") -> Result:
    return Result(checkpoint, check, host, PASS, detail)


def failed(checkpoint: str, check: str, host: str, detail: str) -> Result:
    return Result(checkpoint, check, host, FAIL, detail)


def verdict(checkpoint: str, check: str, host: str, problems: list[str], ok_detail: str) -> Result:
    """Pass with OK_DETAIL when there are no PROBLEMS, else fail listing them."""
    if problems:
        return failed(checkpoint, check, host, "; ".join(problems))
    return passed(checkpoint, check, host, ok_detail)


@dataclass
class Report:
    inventory: str
    scope: str
    started: float = field(default_factory=time.time)
    finished: float | None = None
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(result.status in (FAIL, UNREACHABLE) for result in self.results)

    def summary(self) -> dict[str, int]:
        counts = Counter(result.status for result in self.results)
        return {status: counts.get(status, 0) for status in STATUSES}

    def ordered(self) -> list[Result]:
        order = {name: index for index, name in enumerate(NAMES)}
        return sorted(self.results, key=lambda r: (order.get(r.checkpoint, 99), r.host != CLUSTER, r.host, r.check))

    def as_json(self) -> str:
        duration = (self.finished or time.time()) - self.started
        document = {
            "schema": SCHEMA,
            "inventory": self.inventory,
            "scope": self.scope,
            "started_at": datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_s": round(duration, 2),
            "ok": self.ok,
            "summary": self.summary(),
            "results": [asdict(result) | {"duration_s": round(result.duration_s, 3)} for result in self.ordered()],
        }
        return json.dumps(document, indent=2)

    def as_text(self) -> str:
        rows = [("CHECKPOINT", "CHECK", "HOST", "STATUS", "DETAIL")]
        rows += [(r.checkpoint, r.check, r.host, r.status.upper(), r.detail) for r in self.ordered()]
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        lines = [
            "  ".join(value.ljust(width) for value, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
            for row in rows
        ]
        duration = (self.finished or time.time()) - self.started
        counts = self.summary()
        lines.append("")
        lines.append(
            f"{'OK' if self.ok else 'FAILED'}: {counts[PASS]} passed, {counts[FAIL]} failed, "
            f"{counts[NOT_DEPLOYED]} not deployed, {counts[UNREACHABLE]} unreachable "
            f"({self.inventory}, {duration:.1f} s)"
        )
        return "\n".join(line.rstrip() for line in lines)
