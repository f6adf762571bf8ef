"""What the Ray head's dashboard answers about the cluster, read into plain data.

Plain Python, no pyinfra: the RayNodes, RayStatus and RayJobs facts, validate, the API and the wait script
that runs on the head host (deploys/scripts/wait_ray_nodes.py) all use these, so each question is
asked with one query and read by one parser.
"""

from __future__ import annotations

import json
import shlex

# Ray's state API asks the GCS for its node table (the dashboard's /nodes summary is a cache that lags).
NODES_PATH = "/api/v0/nodes?limit=1000&detail=1&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
# What `ray status` prints, read by the dashboard from the same GCS key (the autoscaler monitor's
# report, rewritten every few seconds): it lags the node table.
STATUS_PATH = "/api/cluster_status?format=1"
# Ray's job API: every job the head knows of, submitted (ray job submit, the dashboard) or a driver that
# connected with ray.init (no submission id).
JOBS_PATH = "/api/jobs/"
UNFINISHED_JOB = ("PENDING", "RUNNING")


def head_query(container: str, port: int, path: str, address: str = "127.0.0.1") -> str:
    """A shell command printing the dashboard's answer at PATH, asked inside CONTAINER ('{}' if none).

    The head's container asks 127.0.0.1; a worker's container asks the head at its cluster ADDRESS.

    The token comes from the file the container's RAY_AUTH_TOKEN_PATH names, and reaches curl as a
    config line on its stdin (printf is the shell's own), so it never appears on a command line.
    """
    query = (
        '{ [ -z "$RAY_AUTH_TOKEN_PATH" ] || '
        'printf \'header = "Authorization: Bearer %s"\\n\' "$(cat "$RAY_AUTH_TOKEN_PATH")"; } | '
        f"curl -sf --max-time 5 -K - {shlex.quote(f'http://{address}:{int(port)}{path}')}"
    )
    return f"docker exec {shlex.quote(container)} sh -c {shlex.quote(query)} 2>/dev/null || echo '{{}}'"


def alive_nodes(answer: str) -> dict[str, dict] | None:
    """The ALIVE nodes in an answer to NODES_PATH, by node IP; None when it is not one.

    A node killed without a word (its container removed) stays ALIVE until the head's health checks
    miss, tens of seconds: when its replacement has joined from the same IP, the one started last
    is the node there.

    .. code:: python

        {"10.0.0.11": {"node_id": "76b0...", "start_time_ms": 1796071595123,
                       "resources": {"CPU": 2.0, "memory": 2.4e10, ...}}}
    """
    try:
        rows = list(json.loads(answer)["data"]["result"]["result"])
    except (ValueError, KeyError, TypeError):
        return None
    alive = [row for row in rows if isinstance(row, dict) and row.get("state") == "ALIVE" and row.get("node_ip")]
    nodes = {}
    for row in sorted(alive, key=lambda row: row.get("start_time_ms") or 0):
        nodes[str(row["node_ip"])] = {
            "node_id": str(row.get("node_id", "")),
            "start_time_ms": int(row.get("start_time_ms") or 0),
            "resources": {key: float(value) for key, value in (row.get("resources_total") or {}).items()},
        }
    return nodes


def status_active_nodes(answer: str) -> set[str] | None:
    """The node ids `ray status` lists as Active, from an answer to STATUS_PATH; None when it is not one.

    The report is text for people, and the only form in which Ray gives the node ids it lists.
    """
    try:
        report = json.loads(answer)["data"]["clusterStatus"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(report, str) or "\nActive:\n" not in report:
        return None
    active = set()
    for line in report.split("\nActive:\n", 1)[1].splitlines():
        fields = line.split()
        if not line.startswith(" "):  # the next section ("Pending:")
            break
        if len(fields) == 2 and fields[1].startswith("node_"):
            active.add(fields[1].removeprefix("node_"))
    return active


def status_total(answer: str, resource: str = "CPU") -> float | None:
    """The total of RESOURCE `ray status` reports ("Total Usage:  0.0/6.0 CPU"); None when it reports none.

    It lags the node table too: right after nodes were recreated it may still count the old ones.
    """
    try:
        report = json.loads(answer)["data"]["clusterStatus"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(report, str):
        return None
    for line in report.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == resource and "/" in fields[0]:
            try:
                return float(fields[0].split("/", 1)[1])
            except ValueError:
                return None
    return None


def work_path(kind: str, node_id: str) -> str:
    """The state API's query for the work still running on NODE_ID: KIND "tasks" (RUNNING) or "actors" (ALIVE)."""
    state = {"tasks": "RUNNING", "actors": "ALIVE"}[kind]
    return (
        f"/api/v0/{kind}?limit=1000&filter_keys=node_id&filter_predicates=%3D&filter_values={node_id}"
        f"&filter_keys=state&filter_predicates=%3D&filter_values={state}"
    )


def running_work(answer: str, kind: str) -> list[str] | None:
    """What an answer to work_path(KIND, ...) lists, one line each ("task sleep_a_while 3f2a..."); None when
    it is not one."""
    try:
        rows = list(json.loads(answer)["data"]["result"]["result"])
    except (ValueError, KeyError, TypeError):
        return None
    noun, name_key, id_key = ("task", "name", "task_id") if kind == "tasks" else ("actor", "class_name", "actor_id")
    return [
        f"{noun} {row.get(name_key) or '?'} {str(row.get(id_key, ''))[:16]}".rstrip()
        for row in rows
        if isinstance(row, dict)
    ]


def running_jobs(answer: str) -> list[dict[str, str]] | None:
    """The jobs an answer to JOBS_PATH lists as PENDING or RUNNING, oldest first; None when it is not one.

    A job is named by its submission id, or by its job id when a driver connected without submitting.

    .. code:: python

        [{"id": "raysubmit_4LamXRuQpYdSMg7J", "status": "RUNNING", "entrypoint": "python train.py"}]
    """
    try:
        rows = json.loads(answer)
    except ValueError:
        return None
    if not isinstance(rows, list):
        return None
    unfinished = [row for row in rows if isinstance(row, dict) and row.get("status") in UNFINISHED_JOB]
    return [
        {
            "id": str(row.get("submission_id") or row.get("job_id") or "?"),
            "status": str(row["status"]),
            "entrypoint": " ".join(str(row.get("entrypoint") or "").split()),
        }
        for row in sorted(unfinished, key=lambda row: row.get("start_time") or 0)
    ]
