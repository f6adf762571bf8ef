"""Run a validation: every host's checks in parallel over SSH, the HTTP checks and the smoke job beside them.

Scopes: "all" (every check and the smoke job), "health" (the HTTP checks only: fast), or one
checkpoint's checks. A host that cannot be reached is reported once, as unreachable, and the
others are still checked.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import testinfra

from deploys.credentials import read_secret
from deploys.topology import Cluster, Node
from raydeploy.checkpoints import NAMES
from validate import gpu_checks, host_checks, http_checks, smoke
from validate.inventory import LoadedInventory, write_ssh_config
from validate.results import CLUSTER, FAIL, UNREACHABLE, Report, Result

SCOPES = ("all", "health", *NAMES)
# What each scope checks on every host.
HOST_SECTIONS = {
    "all": ("docker-installation", "ray-deployment", "monitoring-deployment"),
    "final-validation": ("docker-installation", "ray-deployment", "monitoring-deployment"),
    "health": (),
    "prerequisites-check": ("prerequisites-check",),
    "docker-installation": ("docker-installation",),
    "cleanup-existing": ("cleanup-existing",),
    "ray-deployment": ("ray-deployment",),
    "monitoring-deployment": ("monitoring-deployment",),
}
CLUSTER_SECTIONS = {
    "all": ("ray", "prometheus", "grafana", "alertmanager", "smoke", "gpu"),
    "final-validation": ("ray", "prometheus", "grafana", "alertmanager", "smoke", "gpu"),
    "health": ("ray", "prometheus", "grafana", "alertmanager"),
    "ray-deployment": ("ray",),
    "monitoring-deployment": ("prometheus", "grafana", "alertmanager"),
}


class SecretReader:
    """Secrets from the state directory, read once; never generated here."""

    def __init__(self, cluster: Cluster):
        self.state_dir = cluster.head.settings.state_dir

    def __call__(self, name: str) -> str:
        value = read_secret(self.state_dir, name)
        if value is None:
            raise host_checks.MissingSecret(name)
        return value


def timed(function: Callable[[], list[Result]]) -> list[Result]:
    started = time.monotonic()
    results = function()
    elapsed = (time.monotonic() - started) / max(len(results), 1)
    return [Result(**{**result.__dict__, "duration_s": elapsed}) for result in results]


def check_host(
    name: str, node: Node, cluster: Cluster, ssh_config: Path, sections: tuple[str, ...], secret_of
) -> list[Result]:
    host = testinfra.get_host(f"ssh://{name}", ssh_config=str(ssh_config))
    try:
        probe = host.run("true")
        why = "" if probe.rc == 0 else (probe.stderr or probe.stdout or f"ssh exited {probe.rc}")
    except RuntimeError as error:  # testinfra raises when ssh itself fails (exit 255)
        result = error.args[0] if error.args else None
        why = getattr(result, "stderr", "") or str(error)
    if why:
        return [Result(sections[0], "ssh", name, UNREACHABLE, why.strip().splitlines()[-1])]
    results: list[Result] = []
    for section in sections:
        try:
            results += _section(host, section, node, cluster, secret_of)
        except Exception as error:  # one broken check must not hide the others
            results.append(Result(section, "checks", name, FAIL, f"could not check: {type(error).__name__}: {error}"))
    return results


HOST_CHECKS = {
    "prerequisites-check": lambda host, node, cluster, secret_of: host_checks.prerequisites(host, node),
    "docker-installation": lambda host, node, cluster, secret_of: host_checks.docker_installation(host, node),
    "cleanup-existing": lambda host, node, cluster, secret_of: host_checks.cleanup(host, node),
    "ray-deployment": lambda host, node, cluster, secret_of: (
        host_checks.ray_deployment(host, node, cluster, secret_of) + gpu_checks.ray_gpus(host, node, cluster, secret_of)
    ),
    "monitoring-deployment": host_checks.monitoring_deployment,
}


def _section(host, section: str, node: Node, cluster: Cluster, secret_of) -> list[Result]:
    return HOST_CHECKS[section](host, node, cluster, secret_of)


def cluster_section(section: str, cluster: Cluster, secret_of) -> list[Result]:
    try:
        return _cluster_section(section, cluster, secret_of)
    except Exception as error:  # answers are untrusted input: a surprise is a failure, not a crash
        return [Result("final-validation", section, CLUSTER, FAIL, f"could not check: {type(error).__name__}: {error}")]


def _cluster_section(section: str, cluster: Cluster, secret_of) -> list[Result]:
    if section == "ray":
        return http_checks.ray_dashboard(cluster, secret_of)
    if section == "prometheus":
        return http_checks.prometheus(cluster)
    if section == "grafana":
        return http_checks.grafana(cluster, secret_of)
    if section == "alertmanager":
        return http_checks.alertmanager(cluster)
    if section == "smoke":
        return smoke.smoke_job(cluster, secret_of)
    if section == "gpu":
        return gpu_checks.gpu_job(cluster, secret_of)
    raise AssertionError(section)


def run(loaded: LoadedInventory, scope: str = "all") -> Report:
    """Validate LOADED's cluster for SCOPE; the report holds every result."""
    report = Report(inventory=loaded.path, scope=scope)
    cluster, secret_of = loaded.cluster, SecretReader(loaded.cluster)
    sections = HOST_SECTIONS[scope]
    with tempfile.TemporaryDirectory(prefix="raydeploy-validate-") as scratch:
        ssh_config = write_ssh_config(loaded.ssh, Path(scratch))
        try:
            with ThreadPoolExecutor(max_workers=len(cluster.hosts) + 4) as pool:
                futures = [
                    pool.submit(timed, lambda s=section: cluster_section(s, cluster, secret_of))
                    for section in CLUSTER_SECTIONS.get(scope, ())
                ]
                if sections:
                    futures += [
                        pool.submit(
                            timed, lambda n=node: check_host(n.name, n, cluster, ssh_config, sections, secret_of)
                        )
                        for node in cluster.hosts
                    ]
                for future in futures:
                    report.results += future.result()
        finally:
            _close_connections(ssh_config, list(loaded.ssh))
    report.finished = time.time()
    return report


def _close_connections(ssh_config: Path, names: list[str]) -> None:
    """End the shared SSH connections this run opened (they would otherwise linger for 30 s)."""
    for name in names:
        subprocess.run(["ssh", "-F", str(ssh_config), "-O", "exit", name], capture_output=True, timeout=10, check=False)
