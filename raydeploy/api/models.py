"""The API's request and response shapes: the seed's contract (same names, fields and enum values), extended.

Request bodies forbid unknown fields, so a client cannot set what the server owns (`status`, ids,
timestamps): such a body is refused with 422 and the field named. Responses are validated against
these models before they leave, so the served OpenAPI document is what clients get.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["HEALTHY", "DEGRADED", "FAILED", "UNKNOWN"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    error: str
    message: str
    timestamp: str
    details: dict[str, Any] = Field(default_factory=dict)


# Cluster ----------------------------------------------------------------------------------------


class RayClusterHealth(BaseModel):
    status: Level
    nodes: int = Field(description="Nodes the Ray head reports alive")
    expected_nodes: int = Field(0, description="Ray nodes in the inventory")


class MonitoringHealth(BaseModel):
    status: Level
    services: list[str]


class ContainerCounts(BaseModel):
    total: int
    running: int
    checked_at: str | None = Field(None, description="When the last validation counted them")


class EndpointCounts(BaseModel):
    healthy: int
    total: int


class ClusterHealth(BaseModel):
    overall_status: Level
    ray_cluster: RayClusterHealth
    monitoring: MonitoringHealth
    containers: ContainerCounts
    endpoints: EndpointCounts
    problems: list[str] = Field(default_factory=list)
    checked_at: str = Field(description="When the checks behind this answer ran (UTC)")
    age_s: float = Field(0.0, description="How old this answer is: it may be served from a cache of a few seconds")
    message: str | None = None


class NodeCheckpointStatus(BaseModel):
    status: Literal["PASSED", "FAILED", "IN_PROGRESS"]
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    approval_required: bool
    destructive_operation: bool


class NodeCheckpointResult(NodeCheckpointStatus):
    """A host's result of one checkpoint, as a node's details list them."""

    checkpoint: str


class CheckpointStatus(BaseModel):
    checkpoint: str
    status: Literal["PASSED", "FAILED", "NOT_FOUND", "IN_PROGRESS"]
    nodes: dict[str, NodeCheckpointStatus]
    total_nodes: int
    passed_nodes: int
    message: str


class ClusterStatus(BaseModel):
    deployment_status: Literal["COMPLETED", "IN_PROGRESS", "FAILED"]
    completed_checkpoints: list[str]
    total_checkpoints: int
    checkpoint_details: dict[str, CheckpointStatus]
    cluster_health: ClusterHealth
    last_updated: str = Field(
        description="When the deployment last changed (the newest run's end, else its start); "
        "on a state with no run yet, when the health in this answer was checked",
        json_schema_extra={"format": "date-time"},
    )
    notices: list[str] = Field(
        default_factory=list,
        description="Hosts the state remembers that disagree with the inventory, one line each with what to do: "
        "deployed by a run and no longer in the inventory (its containers still run there), or removed by "
        "remove-node and still in it (the next deploy would deploy it again)",
    )


# Checkpoints, plans, approvals ------------------------------------------------------------------


class CheckpointExecutionRequest(Request):
    force: bool = Field(False, description="Run even if an earlier checkpoint has not passed")
    approve: bool = Field(
        False,
        description="Approve the current plan with this token's identity (needs the approver role; "
        "not for a destructive checkpoint, which needs POST /api/v1/approvals/{name} with acknowledge_risks)",
    )


class CheckpointExecution(BaseModel):
    checkpoint: str
    execution_id: str
    status: Literal["STARTED", "RUNNING", "COMPLETED", "FAILED"]
    started_at: str
    message: str
    run_url: str
    log_url: str


class HostPlan(BaseModel):
    changes: int
    operations: list[str]
    notes: list[str]


class PlannedCommand(BaseModel):
    """One command of a planned operation (README, "Plans"): a shell command or a file transfer."""

    type: str = Field(description="shell, upload, download, function")
    command: str | None = Field(None, description="shell: the command, generated secrets redacted")
    dest: str | None = None
    src: str | None = None
    function: str | None = None
    sha256: str | None = Field(None, description="shell: of the command as run; upload: of the file's content")


class PlannedOperation(BaseModel):
    name: str
    commands: list[PlannedCommand]
    conditional: bool = False


class Disruption(BaseModel):
    kind: str = Field(examples=["cluster-restart"])
    summary: str


class HostPlanDocument(BaseModel):
    status: Literal["planned", "unreachable", "failed"]
    operations: list[PlannedOperation]
    notes: list[str] = Field(description="what the deploy says for people; not part of the digest")
    error: str | None = None
    disruptions: list[Disruption] = Field(
        default_factory=list, description="what of this host's changes interrupts the whole cluster (in the digest)"
    )


class PlanDocument(BaseModel):
    """The plan as data, format 1: everything but the notes is covered by the digest."""

    format: int
    checkpoint: str
    hosts: dict[str, HostPlanDocument]
    error: str | None = None


class PlanView(BaseModel):
    checkpoint: str
    digest: str
    fingerprint: str
    has_changes: bool
    disruptive: bool = Field(False, description="Running this plan restarts the whole cluster")
    disruptions: dict[str, list[str]] = Field(default_factory=dict, description="Per host: what disrupts, in words")
    unreachable: list[str]
    hosts: dict[str, HostPlan]
    plan: PlanDocument
    text: str
    notices: list[str] = Field(
        default_factory=list,
        description="Hosts the state remembers that disagree with the inventory, one line each with what to do: "
        "deployed by a run and no longer in the inventory (its containers still run there), or removed by "
        "remove-node and still in it (the next deploy would deploy it again)",
    )


class ApprovalSummary(BaseModel):
    id: str
    approved_by: str
    plan_digest: str
    created_at: str
    expires_at: str
    status: str
    source: str


class ApprovalInfo(BaseModel):
    checkpoint: str
    approval_required: bool
    destructive_operation: bool
    disruptive: bool = Field(
        False, description="The current plan restarts the whole cluster (a new Ray release): it needs an approval"
    )
    approval_file: str = Field(description="Where a manual approval file for this checkpoint is read from")
    message: str
    impact_summary: list[str] = Field(description="Per host: what the current plan changes")
    plan_digest: str | None = None
    has_changes: bool | None = None
    separation_of_duties: bool
    approvals: list[ApprovalSummary] = Field(default_factory=list, description="Valid approvals of this checkpoint")


class ApprovalRequired(BaseModel):
    """The only 400 of execute: the plan needs an approval that nobody has given."""

    error: Literal["APPROVAL_REQUIRED"]
    message: str
    timestamp: str
    details: dict[str, Any] = Field(default_factory=dict)
    checkpoint: str
    approval_info: ApprovalInfo


# An inventory host name as raydeploy accepts one (also raydeploy/node_actions.py).
HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class RemoveNodeRequest(Request):
    hosts: list[Annotated[str, Field(pattern=HOST_NAME, max_length=253)]] = Field(
        min_length=1, max_length=100, description="Inventory names of the workers to drain and remove"
    )
    drain_timeout: str = Field(
        "5m",
        pattern=r"^[1-9][0-9]{0,5}[smhd]$",
        description="How long running tasks and actors get to finish or move (30s, 5m, 1h)",
    )
    remove_on_drain_timeout: bool = Field(
        False, description="Remove a node even if its drain times out (the work still running there is cut off)"
    )


class RemoveNodeApprovalRequest(RemoveNodeRequest):
    reason: str = Field(min_length=1, max_length=1000)
    acknowledge_risks: bool = Field(False, description="Required: remove-node is destructive")
    ttl_minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="How long the approval lasts")
    plan_digest: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{16}$",
        description="Optional: the digest of the plan the approver read; 409 PLAN_CHANGED when the plan now differs",
    )


class ApprovalRequest(Request):
    approved_by: str | None = Field(
        None, max_length=200, description="Optional: must be the token's own name (the server takes it from there)"
    )
    reason: str = Field(min_length=1, max_length=1000)
    acknowledge_risks: bool = False
    ttl_minutes: int = Field(60, ge=1, le=7 * 24 * 60, description="How long the approval lasts")
    plan_digest: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{16}$",
        description="Optional: the digest of the plan the approver read; 409 PLAN_CHANGED when the plan now differs",
    )
    data: dict[str, str] = Field(
        default_factory=dict,
        description="A day-2 action's arguments, as its run gave them (destroy: purge_data, forget_secrets = "
        '"true"; rollback: rollback_to = the run id; remove-node: remove_hosts, drain_timeout, remove_on_drain_timeout); '
        "part of the plan, so the approval binds them",
    )


class ApprovalResponse(BaseModel):
    checkpoint: str
    approved: bool
    approved_by: str
    approved_at: str
    approval_token: str = Field(description="The approval's id (it is used by the next run of this plan)")
    plan_digest: str
    expires_at: str


class RejectionRequest(Request):
    reason: str = Field(min_length=1, max_length=1000)
    data: dict[str, str] = Field(
        default_factory=dict,
        description="A day-2 action's arguments, as its run gave them (destroy: purge_data, forget_secrets = "
        '"true"; rollback: rollback_to = the run id; remove-node: remove_hosts, drain_timeout, remove_on_drain_timeout); '
        "part of the plan, so the approval binds them",
    )


class RollbackRequest(Request):
    to: str | None = Field(
        None,
        pattern=r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$",
        description="The run whose recorded spec to go back to; default: the latest that differs from the inventory's",
    )


class DestroyRequest(Request):
    purge_data: bool = Field(False, description="Also remove the Redis, Prometheus and Grafana data volumes")
    forget_secrets: bool = Field(
        False, description="After a destroy that succeeded on every host, remove the generated secrets"
    )


class RevocationRequest(Request):
    approval_id: str = Field(pattern=r"^[0-9a-f]{12}$", description="The valid approval to withdraw before it is used")
    reason: str = Field(min_length=1, max_length=1000)


class RevocationResponse(BaseModel):
    checkpoint: str
    approval_id: str
    revoked: bool
    revoked_by: str
    revoked_at: str


class RejectionResponse(BaseModel):
    checkpoint: str
    rejected: bool
    rejected_by: str
    rejected_at: str
    plan_digest: str


# Runs and audit ---------------------------------------------------------------------------------


class Run(BaseModel):
    id: str
    started_at: str
    finished_at: str | None
    status: str
    requested_by: str
    command: str
    inventory: str
    fingerprint: str
    pid: int | None
    checkpoints: str
    failed_checkpoint: str | None
    failed_hosts: str | None
    error: str | None


class CheckpointRun(BaseModel):
    run_id: str
    checkpoint: str
    started_at: str
    finished_at: str | None
    status: str
    plan_digest: str | None
    changed: int | None
    failed_hosts: str | None
    error: str | None


class OperationResult(BaseModel):
    checkpoint: str
    host: str
    operation: str
    result: str
    stderr: str | None = None


class ValidationResult(BaseModel):
    checkpoint: str
    host: str
    check_name: str
    status: str
    detail: str | None = None


class UsedApproval(BaseModel):
    id: str
    checkpoint: str
    approved_by: str
    reason: str
    plan_digest: str
    created_at: str


class RunDetails(Run):
    checkpoint_runs: list[CheckpointRun]
    operations: list[OperationResult] = Field(default_factory=list, description="Per host, per operation: its result")
    validations: list[ValidationResult] = Field(default_factory=list, description="Per host, per check: its status")
    approvals_used: list[UsedApproval] = Field(default_factory=list, description="The approvals this run used")


class AuditVerification(BaseModel):
    intact: bool
    events: int = Field(description="How many events were checked")
    problems: list[str]


class AuditEvent(BaseModel):
    seq: int
    at: str
    actor: str
    event: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


# Nodes and monitoring ---------------------------------------------------------------------------


class NodeOffers(BaseModel):
    """What the node's settings (its group's and its own) give Ray; null where Ray decides."""

    cpus: int | None = Field(description="ray_num_cpus; null: every CPU Ray sees")
    gpus: int | None = Field(description="GPUs offered; null: every GPU nvidia-smi lists on this gpu: nvidia host")
    gpu: Literal["none", "nvidia"]
    memory_mb: int | None = Field(description="ray_memory_mb; null: Ray's default")
    resources: dict[str, float] = Field(description="Custom Ray resources (ray_resources)")
    labels: dict[str, str] = Field(description="Ray node labels (ray_labels)")
    image: str = Field(description="The Ray image this node runs (the GPU build on a GPU host)")


class NodeInfo(BaseModel):
    name: str
    ip: str
    role: Literal["head", "worker"]
    group: str = Field(description="The worker group (an inventory group under `workers`), else the role's group")
    status: Literal["ONLINE", "OFFLINE", "UNKNOWN"]
    containers: list[str]
    cpus: float | None = Field(None, description="CPUs Ray counts on this node (while it is alive)")
    gpus: float | None = Field(None, description="GPUs Ray counts on this node (while it is alive)")
    memory_gib: float | None = Field(None, description="Memory Ray counts on this node, GiB (while it is alive)")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Every resource Ray counts on this node (while it is alive), custom ones too"
    )
    offers: NodeOffers


class SystemInfo(BaseModel):
    """Read over SSH with the deploys' own facts; a host whose facts cannot be read is a 503, not nulls."""

    os: str
    python: str
    memory: str
    disk_free: str
    cpu_cores: str


class ContainerInfo(BaseModel):
    name: str
    status: str
    image: str


class NodeDetails(BaseModel):
    name: str
    ip: str
    role: str
    group: str
    offers: NodeOffers
    status: str
    system_info: SystemInfo
    containers: list[ContainerInfo]
    checkpoints: list[NodeCheckpointResult]


class NodeFinding(BaseModel):
    """Why a Ray node is or is not in the cluster (raydeploy/diagnose.py), from its own host's evidence."""

    host: str
    joined: bool
    cause: str
    fix: str = ""
    evidence: list[str] = Field(default_factory=list, description="raylet's error lines or the container's last lines")


class Alert(BaseModel):
    name: str
    state: str = Field(description="firing or pending")
    severity: str
    summary: str
    instance: str
    active_at: str


class Dashboard(BaseModel):
    id: str
    title: str
    url: str
    description: str


class Healthz(BaseModel):
    status: str
    version: str


# Webhooks ---------------------------------------------------------------------------------------

WebhookEventType = Literal[
    "approval.requested",
    "approval.granted",
    "approval.rejected",
    "approval.expired",
    "run.started",
    "run.interrupted",
    "run.rolled_back",
    "lock.broken",
    "run.succeeded",
    "run.failed",
    "validation.failing",
    "validation.passing",
]


class WebhookRequest(Request):
    url: str = Field(min_length=1, max_length=2000, description="Where events are posted (http or https)")
    format: Literal["json", "slack"] = Field("json", description="json: the signed event; slack: a readable message")
    events: list[WebhookEventType] = Field(
        default_factory=list, max_length=20, description="Only these event types (empty: all)"
    )
    cluster: str | None = Field(
        None,
        max_length=200,
        description="The cluster's name in each event (default: the inventory's cluster_name, else ray)",
    )
    console_url: str | None = Field(
        None, max_length=500, description="The console's base URL, for each event's link to its run or approval"
    )
    allow_private: bool = Field(
        False, description="Allow a URL on loopback, link-local or private addresses (refused otherwise)"
    )


class WebhookEndpoint(BaseModel):
    id: str
    url: str
    format: str
    events: list[str]
    cluster: str
    console_url: str | None
    allow_private: bool
    created_at: str
    created_by: str


class WebhookCreated(WebhookEndpoint):
    secret: str = Field(description="The endpoint's signing secret: given this once, never again")


class WebhookDelivery(BaseModel):
    seq: int
    endpoint_id: str
    event_id: str
    type: str
    status: str = Field(description="pending, delivered, abandoned (after a day of failures) or cancelled")
    attempts: int
    last_code: int | None
    last_error: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None
    created_at: str
    delivered_at: str | None


class WebhookRemoved(BaseModel):
    id: str
    cancelled: int = Field(description="Deliveries it still had queued, now cancelled")


class WebhookTested(BaseModel):
    id: str
    event_id: str = Field(description="The test event's id: follow it in /api/v1/webhooks/deliveries")
