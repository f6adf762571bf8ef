"""Approvals bound to plans: who, why, when, until when, for exactly which plan; used once; audited.

An approval names a checkpoint, the inventory's fingerprint and the digest of the planned
changes. Just before the checkpoint runs, its plan is made again: an approval counts only if
all three still match, it has not expired (expiry fails closed), it was not used, revoked or
rejected, a destructive checkpoint's approval acknowledges the risks, and, with separation of
duties on, it was not given by whoever requested the run.

Manual approvals (the seed's path): a JSON file in `<state dir>/approvals/`, e.g.

    {"checkpoint": "cleanup-existing", "approved_by": "alice", "reason": "CHG-1234",
     "acknowledge_risks": true, "plan_digest": "3f2a9c0d1e7b4a55", "expires_at": "2026-11-28T18:00:00Z"}

`plan_digest` and `expires_at` are optional: without a digest the file approves the plan made
when it is read; without an expiry it lasts the default hour. Each file is recorded (and audited)
once, then moved to `approvals/recorded/`.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from raydeploy.audit import now_utc
from raydeploy.checkpoints import get, needs_approval, needs_risk_acknowledgement, risky, what_to_approve
from raydeploy.plans import Plan, difference
from raydeploy.state import StateStore

DEFAULT_TTL = timedelta(hours=1)
TTL_PATTERN = re.compile(r"^(\d+)([smhd])$")


class ApprovalError(Exception):
    """An approval cannot be given or used; the message says why and what to do."""


def parse_ttl(text: str) -> timedelta:
    match = TTL_PATTERN.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ApprovalError(f"--ttl {text!r}: give a duration like 30m, 1h, 2d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC. ValueError when TEXT is not one."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Decision:
    approval: dict[str, Any] | None
    reason: str


class Approvals:
    def __init__(self, store: StateStore, separation_of_duties: bool = False):
        self.store = store
        self.separation_of_duties = separation_of_duties

    # Giving, refusing, withdrawing -------------------------------------------------------------

    def grant(
        self,
        plan: Plan,
        approved_by: str,
        reason: str,
        acknowledge_risks: bool = False,
        ttl: timedelta = DEFAULT_TTL,
        source: str = "cli",
        actor: str | None = None,
    ) -> dict[str, Any]:
        checkpoint = get(plan.checkpoint)
        approved_by, reason = approved_by.strip(), reason.strip()
        if not approved_by:
            raise ApprovalError("an approval needs who gives it (--by)")
        if not reason:
            raise ApprovalError("an approval needs a reason (--reason)")
        if not needs_approval(checkpoint, plan):
            raise ApprovalError(f"{checkpoint.name} needs no approval; it runs without one")
        if needs_risk_acknowledgement(checkpoint, plan) and not acknowledge_risks:
            self.store.audit.append(
                actor or approved_by,
                "approval refused",
                checkpoint.name,
                approved_by=approved_by,
                why="risks not acknowledged",
            )
            raise ApprovalError(
                f"{checkpoint.name} is {risky(checkpoint)}: approve it with --acknowledge-risks after reading its plan"
            )
        now = datetime.now(UTC)
        approval = {
            "id": uuid.uuid4().hex[:12],
            "checkpoint": checkpoint.name,
            "fingerprint": plan.fingerprint,
            "plan_digest": plan.digest,
            "plan_summary": json.dumps(plan.document, sort_keys=True),  # the plan approved, for what changes later
            "approved_by": approved_by,
            "reason": reason,
            "acknowledge_risks": int(bool(acknowledge_risks)),
            "created_at": _format_time(now),
            "expires_at": _format_time(now + ttl),
            "status": "valid",
            "source": source,
        }
        with self.store.transaction():  # an approval that is not on the trail does not exist
            self.store.insert_approval(approval)
            self.store.audit.append(
                actor or approved_by,
                "approval granted",
                checkpoint.name,
                approval_id=approval["id"],
                approved_by=approved_by,
                reason=reason,
                plan_digest=plan.digest,
                fingerprint=plan.fingerprint,
                expires_at=approval["expires_at"],
                acknowledge_risks=bool(acknowledge_risks),
                source=source,
            )
        return self.get(approval["id"])

    def reject(self, plan: Plan, rejected_by: str, reason: str) -> None:
        """Refuse CHECKPOINT's current plan: open approvals for it are closed, and the refusal audited."""
        if not rejected_by.strip() or not reason.strip():
            raise ApprovalError("a rejection needs --by and --reason")
        with self.store.transaction():
            for approval in self.store.approvals(plan.checkpoint, status="valid"):
                self.store.close_approval(approval["id"], "rejected", rejected_by, reason)
            self.store.audit.append(
                rejected_by, "plan rejected", plan.checkpoint, plan_digest=plan.digest, reason=reason
            )

    def revoke(self, approval_id: str, revoked_by: str, reason: str) -> dict[str, Any]:
        approval = self.get(approval_id)
        if approval is None:
            raise ApprovalError(f"no approval {approval_id}; see `raydeploy approvals`")
        if approval["status"] != "valid":
            raise ApprovalError(f"approval {approval_id} is {approval['status']}; only a valid one can be revoked")
        with self.store.transaction():
            if not self.store.close_approval(approval_id, "revoked", revoked_by, reason):
                raise ApprovalError(f"approval {approval_id} was used or withdrawn meanwhile")
            self.store.audit.append(
                revoked_by, "approval revoked", approval["checkpoint"], approval_id=approval_id, reason=reason
            )
        return self.get(approval_id)

    # Reading ------------------------------------------------------------------------------------

    def get(self, approval_id: str) -> dict[str, Any] | None:
        return self.store.approval(approval_id)

    def all(self, checkpoint: str | None = None) -> list[dict[str, Any]]:
        self.expire()
        return self.store.approvals(checkpoint)

    def expire(self, actor: str = "raydeploy") -> None:
        """Mark valid approvals past their expiry as expired (audited)."""
        now = datetime.now(UTC)
        for approval in self.store.approvals(status="valid"):
            if _parse_time(approval["expires_at"]) > now:
                continue
            with self.store.transaction():
                if self.store.close_approval(approval["id"], "expired"):
                    self.store.audit.append(
                        actor, "approval expired", approval["checkpoint"], approval_id=approval["id"]
                    )

    def find(self, plan: Plan, requested_by: str | None = None) -> Decision:
        """The approval that lets PLAN run now, or why there is none (naming what changed)."""
        self.import_files(plan)
        self.expire()
        checkpoint = get(plan.checkpoint)
        candidates = self.store.approvals(plan.checkpoint, status="valid")
        reasons = []
        for approval in candidates:
            if approval["fingerprint"] != plan.fingerprint:
                reasons.append(f"approval {approval['id']} was given for another inventory (its hosts or data changed)")
                continue
            if approval["plan_digest"] != plan.digest:
                reasons.append(
                    f"approval {approval['id']} was given for plan {approval['plan_digest']}, the plan is now "
                    f"{plan.digest}: {changed_since(approval, plan)}"
                )
                continue
            if needs_risk_acknowledgement(checkpoint, plan) and not approval["acknowledge_risks"]:
                reasons.append(f"approval {approval['id']} does not acknowledge the risks")
                continue
            if (
                needs_risk_acknowledgement(checkpoint, plan)
                and self.separation_of_duties
                and requested_by is not None
                and approval["approved_by"] == requested_by
            ):
                reasons.append(
                    f"approval {approval['id']} was given by {requested_by}, who requested this run; with separation "
                    f"of duties another person must approve a {what_to_approve(checkpoint)}"
                )
                continue
            return Decision(approval, "")
        if not candidates:
            reasons.append(f"no valid approval for {plan.checkpoint}")
        return Decision(None, "; ".join(reasons))

    def use(self, approval: dict[str, Any], run_id: str, requested_by: str) -> None:
        """Mark APPROVAL used by RUN_ID; it never counts again."""
        details = {"approval_id": approval["id"], "run_id": run_id, "approved_by": approval["approved_by"]}
        if approval["approved_by"] == requested_by:
            details["self_approval"] = True
        with self.store.transaction():
            if not self.store.use_approval(approval["id"], run_id):
                raise ApprovalError(f"approval {approval['id']} was used or withdrawn meanwhile")
            self.store.audit.append(requested_by, "approval used", approval["checkpoint"], **details)

    # The seed's manual path -----------------------------------------------------------------------

    def import_files(self, plan: Plan) -> list[dict[str, Any]]:
        """Record every approval file for PLAN's checkpoint; a malformed file is refused (and audited)."""
        folder = self.store.directory / "approvals"
        done = folder / "recorded"
        imported = []
        for path in sorted(folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                if data.get("checkpoint") != plan.checkpoint:
                    continue
                if data.get("plan_digest") not in (None, plan.digest):
                    raise ValueError(f"plan_digest {data['plan_digest']} is not the current plan {plan.digest}")
                ttl = DEFAULT_TTL
                if data.get("expires_at"):
                    ttl = _parse_time(str(data["expires_at"])) - datetime.now(UTC)
                    if ttl.total_seconds() <= 0:
                        raise ValueError(f"expired at {data['expires_at']}")
                approval = self.grant(
                    plan,
                    approved_by=str(data.get("approved_by", "")),
                    reason=str(data.get("reason", "")),
                    acknowledge_risks=bool(data.get("acknowledge_risks", False)),
                    ttl=ttl,
                    source=f"file {path.name}",
                )
                imported.append(approval)
            except (ValueError, ApprovalError, OSError) as error:
                self.store.audit.append(
                    "raydeploy", "approval refused", plan.checkpoint, file=path.name, why=str(error)
                )
            done.mkdir(exist_ok=True, mode=0o700)
            path.replace(done / f"{now_utc()}-{path.name}")
        return imported


def changed_since(approval: dict[str, Any], plan: Plan) -> str:
    """What differs, per host, between the plan APPROVAL was given for and PLAN."""
    approved = json.loads(approval["plan_summary"])
    if "hosts" not in approved or approved.get("format") != plan.document.get("format"):
        return "it was made by an earlier raydeploy; plan and approve again"
    return "; ".join(difference(approved, plan.document)) or "the same operations, other inputs"
