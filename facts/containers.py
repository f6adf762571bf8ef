"""Docker containers and images on a host, as the deploys need them: names, labels, state, health."""

from __future__ import annotations

import json
from typing import Any

from pyinfra.api import FactBase

SPEC_LABEL = "raydeploy.spec"
COMPONENT_LABEL = "raydeploy.component"


class Containers(FactBase):
    """
    Every container on the host, by name: image, state, health, labels and restart count.

    .. code:: python

        {"ray-head": {"image": "rayproject/ray:2.60.0-py311-cpu", "running": True,
                      "health": "healthy", "labels": {"raydeploy.spec": "..."}, ...}}
    """

    requires_command = "docker"
    default = dict

    def command(self) -> str:
        return (
            'ids=$(docker ps --all --quiet --no-trunc); if [ -n "$ids" ]; then docker inspect $ids; else echo "[]"; fi'
        )

    def process(self, output: list[str]) -> dict[str, dict[str, Any]]:
        containers = {}
        for found in json.loads("\n".join(output)):
            state = found.get("State") or {}
            config = found.get("Config") or {}
            containers[found["Name"].lstrip("/")] = {
                "id": found["Id"],
                "image": config.get("Image", ""),
                "image_id": found.get("Image", ""),
                "status": state.get("Status", ""),
                "running": bool(state.get("Running")),
                "health": (state.get("Health") or {}).get("Status", ""),
                "restart_count": found.get("RestartCount", 0),
                "labels": config.get("Labels") or {},
                "started_at": state.get("StartedAt", ""),
            }
        return containers


class DockerImages(FactBase):
    """
    Images present on the host, by reference (``repository:tag``), with their ids.
    """

    requires_command = "docker"
    default = dict

    def command(self) -> str:
        return "docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}'"

    def process(self, output: list[str]) -> dict[str, str]:
        images = {}
        for line in output:
            reference, _, image_id = line.strip().partition(" ")
            if not reference.endswith(":<none>"):
                images[reference] = image_id
        return images
