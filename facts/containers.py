"""Docker containers and images on a host, as the deploys, validate and the API need them.

Both are views of pyinfra's own facts (`docker container inspect` / `docker image inspect` of
everything on the host): one probe per question, small views for what each caller needs.
"""

from __future__ import annotations

from typing import Any

from pyinfra.api import ShortFactBase
from pyinfra.facts.docker import DockerContainers, DockerImages

SPEC_LABEL = "raydeploy.spec"
COMPONENT_LABEL = "raydeploy.component"


def container_views(inspected: list[dict] | None) -> dict[str, dict[str, Any]]:
    """`docker container inspect` output (parsed JSON) as the fields we read, by container name."""
    containers = {}
    for found in inspected or []:
        state = found.get("State") or {}
        config = found.get("Config") or {}
        containers[found["Name"].lstrip("/")] = {
            "id": found["Id"],
            "image": config.get("Image", ""),
            "image_id": found.get("Image", ""),
            "status": state.get("Status", ""),
            "running": bool(state.get("Running")),
            "exit_code": state.get("ExitCode", 0),
            "health": (state.get("Health") or {}).get("Status", ""),
            "restart_count": found.get("RestartCount", 0),
            "restart_policy": ((found.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name", ""),
            "labels": config.get("Labels") or {},
            "started_at": state.get("StartedAt", ""),
            "published": published_ports(found),
            # Where a Ray head keeps its GCS tables in Redis (deploys/ray_versions.py); "" for any other.
            "storage_namespace": _env_value(config.get("Env"), "RAY_external_storage_namespace"),
        }
    return containers


def _env_value(env: list[str] | None, key: str) -> str:
    """KEY's value in a container's `Config.Env` ("KEY=VALUE" items), or ""; no other variable is read."""
    return next((item.split("=", 1)[1] for item in env or [] if item.startswith(f"{key}=")), "")


def published_ports(inspected: dict) -> list[int]:
    """The host ports a container publishes (docker-proxy holds them on the host)."""
    bindings = (inspected.get("NetworkSettings") or {}).get("Ports") or {}
    return sorted({int(b["HostPort"]) for found in bindings.values() for b in found or [] if b.get("HostPort")})


class Containers(ShortFactBase):
    """
    Every container on the host, by name: image, state, health, labels, restart policy and count.

    .. code:: python

        {"ray-head": {"image": "rayproject/ray:2.60.0-py311-cpu", "running": True, "status": "running",
                      "health": "healthy", "restart_policy": "unless-stopped",
                      "labels": {"raydeploy.spec": "..."}, ...}}
    """

    fact = DockerContainers

    def process_data(self, data: list[dict] | None) -> dict[str, dict[str, Any]]:
        return container_views(data)


def image_ids(inspected: list[dict] | None) -> dict[str, str]:
    """`docker image inspect` output (parsed JSON) as ``{reference: image id}``, each image under every
    reference that pulls it: ``repository:tag``, ``repository@sha256:...`` and, for an image pinned
    by digest in the inventory, ``repository:tag@sha256:...``."""
    found = {}
    for image in inspected or []:
        tags, digests = image.get("RepoTags") or [], image.get("RepoDigests") or []
        pinned = [
            f"{tag}@{digest.split('@', 1)[1]}" for tag in tags for digest in digests if same_repository(tag, digest)
        ]
        found.update(dict.fromkeys([*tags, *digests, *pinned], image["Id"]))
    return found


def same_repository(tag: str, digest: str) -> bool:
    """Whether TAG (``repository:tag``) and DIGEST (``repository@sha256:...``) name one repository."""
    return tag.rsplit(":", 1)[0] == digest.split("@", 1)[0]


class ImageIds(ShortFactBase):
    """
    Images present on the host, by reference (``repository:tag``), with their ids.
    """

    fact = DockerImages

    def process_data(self, data: list[dict] | None) -> dict[str, str]:
        return image_ids(data)
