"""The Ray smoke job: submitted through the Jobs API on the dashboard port, it must run on every alive node.

The job pins one task to each alive node and spreads as many more over the cluster; every task
reports the node it ran on. It passes only if each alive node ran at least one task and each
inventory node is among them. The job is deleted afterwards (stopped first if it overran).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable

import requests

from deploys.topology import Cluster
from validate.http_checks import dashboard_url, ray_headers
from validate.results import CLUSTER, Result, failed, verdict

CHECKPOINT = "final-validation"
CHECK = "ray smoke job"
MARKER = "RAYDEPLOY_SMOKE "
JOB = """
import json, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()

@ray.remote(num_cpus=0.01)
def where():
    return ray.util.get_node_ip_address()

alive = [node for node in ray.nodes() if node["Alive"]]
pinned = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote()
          for node in alive]
spread = [where.options(scheduling_strategy="SPREAD").remote() for _ in alive]
ran = ray.get(pinned + spread, timeout=90)
print("RAYDEPLOY_SMOKE " + json.dumps({"alive": sorted(n["NodeManagerAddress"] for n in alive), "ran_on": ran}))
"""


def smoke_job(cluster: Cluster, secret_of: Callable[[str], str], timeout_s: float = 120) -> list[Result]:
    logs, failure = job_logs(cluster, secret_of, JOB, CHECK, "smoke", timeout_s)
    if failure:
        return [failure]
    submission = "the smoke job"
    line = next((line for line in logs.splitlines() if line.startswith(MARKER)), None)
    if line is None:
        return [failed(CHECKPOINT, CHECK, CLUSTER, f"job {submission} printed no report")]
    try:
        report = json.loads(line[len(MARKER) :])
        alive, ran_on = set(report["alive"]), [str(address) for address in report["ran_on"]]
    except (ValueError, KeyError, TypeError) as error:
        return [failed(CHECKPOINT, CHECK, CLUSTER, f"job {submission} report unreadable: {error}")]
    problems = [f"alive node {address} ran no task" for address in sorted(alive - set(ran_on))]
    by_address = {node.settings.cluster_address: node.name for node in cluster.nodes}
    problems += [f"{name} ({address}) took no part" for address, name in by_address.items() if address not in ran_on]
    counts = {by_address.get(address, address): ran_on.count(address) for address in sorted(set(ran_on))}
    detail = f"{len(ran_on)} tasks ran on " + ", ".join(f"{name} ({count})" for name, count in counts.items())
    return [verdict(CHECKPOINT, CHECK, CLUSTER, problems, detail)]


def job_logs(
    cluster: Cluster, secret_of: Callable[[str], str], script: str, check: str, name: str, timeout_s: float = 120
) -> tuple[str, Result | None]:
    """Run SCRIPT as a Ray job through the Jobs API (submission raydeploy-NAME-<ms>) and delete it: its logs,
    or a failed CHECK saying why not. One path for every job validation runs (the smoke job, the GPU job)."""
    url = dashboard_url(cluster)
    try:
        headers = ray_headers(cluster, secret_of)
    except Exception as error:
        return "", failed(CHECKPOINT, check, CLUSTER, f"cannot authenticate: {error}")
    submission = f"raydeploy-{name}-{int(time.time() * 1000)}"
    body = {"entrypoint": f"python -c {shlex.quote(script)}", "submission_id": submission}
    try:
        response = requests.post(f"{url}/api/jobs/", json=body, headers=headers, timeout=10)
        response.raise_for_status()
    except requests.RequestException as error:
        return "", failed(CHECKPOINT, check, CLUSTER, f"submitting to {url}/api/jobs/: {error}")
    status, message = "PENDING", ""
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            info = requests.get(f"{url}/api/jobs/{submission}", headers=headers, timeout=10).json()
            status, message = info.get("status"), info.get("message") or ""
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(0.5)
        logs = requests.get(f"{url}/api/jobs/{submission}/logs", headers=headers, timeout=10).json().get("logs", "")
    except (requests.RequestException, ValueError, AttributeError) as error:
        return "", failed(CHECKPOINT, check, CLUSTER, f"following job {submission}: {error}")
    finally:
        leftover = _clean_up(url, submission, headers)
    if leftover:
        return "", failed(CHECKPOINT, check, CLUSTER, f"{leftover} (it {status or 'did not finish'})")
    if status != "SUCCEEDED":
        tail = " | ".join(logs.strip().splitlines()[-3:])
        return "", failed(
            CHECKPOINT, check, CLUSTER, f"job {submission} {status or 'unknown'} {message} {tail}".strip()
        )
    return logs, None


def _clean_up(url: str, submission: str, headers: dict[str, str], timeout_s: float = 30) -> str:
    """Stop the job if it still runs, then delete it; '' once it is gone for good, else why not.

    Ray's job manager watches each job's supervisor for up to a second after the job ends; a job
    deleted before it stops watching comes back as a FAILED ghost ("Job supervisor actor died").
    So: wait a moment, delete, and check it stays deleted; repeat until it does.
    """
    last = ""
    try:
        requests.post(f"{url}/api/jobs/{submission}/stop", headers=headers, timeout=10)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(1.5)
            response = requests.delete(f"{url}/api/jobs/{submission}", headers=headers, timeout=10)
            if response.status_code >= 400 and response.status_code != 404:
                last = f"{response.status_code} {response.text[:200]}"
                continue
            time.sleep(1.5)
            if requests.get(f"{url}/api/jobs/{submission}", headers=headers, timeout=10).status_code == 404:
                return ""
            last = "it reappeared after deletion"
    except requests.RequestException as error:
        last = str(error)
    return f"job {submission} could not be deleted: {last}"
