"""Ray's view of the cluster, asked from the head's dashboard inside the head container."""

from __future__ import annotations

from typing import Any

from pyinfra.api import FactBase

from facts.ray_answers import (
    JOBS_PATH,
    NODES_PATH,
    STATUS_PATH,
    alive_nodes,
    head_query,
    running_jobs,
    status_active_nodes,
)


class RayNodes(FactBase):
    """
    The nodes the Ray head's node table has ALIVE, by node IP. Empty when Ray does not answer.

    .. code:: python

        {"10.0.0.11": {"node_id": "76b0...", "resources": {"CPU": 16.0, ...}}}
    """

    requires_command = "docker"
    default = dict

    def command(self, container: str = "ray-head", port: int = 8265) -> str:
        return head_query(container, port, NODES_PATH)

    def process(self, output: list[str]) -> dict[str, dict[str, Any]]:
        return alive_nodes("\n".join(output)) or {}


class RayStatus(FactBase):
    """
    The node ids `ray status` on the head lists as Active; None when Ray does not answer.

    .. code:: python

        {"76b0d466f3f2...", "b7fbe6bb64a4..."}
    """

    requires_command = "docker"

    def command(self, container: str = "ray-head", port: int = 8265) -> str:
        return head_query(container, port, STATUS_PATH)

    def process(self, output: list[str]) -> set[str] | None:
        return status_active_nodes("\n".join(output))


class RayJobs(FactBase):
    """
    The Ray jobs the head has PENDING or RUNNING, oldest first; None when Ray does not answer.

    .. code:: python

        [{"id": "raysubmit_4LamXRuQpYdSMg7J", "status": "RUNNING", "entrypoint": "python train.py"}]
    """

    requires_command = "docker"

    def command(self, container: str = "ray-head", port: int = 8265) -> str:
        return head_query(container, port, JOBS_PATH)

    def process(self, output: list[str]) -> list[dict[str, str]] | None:
        return running_jobs("\n".join(output))
