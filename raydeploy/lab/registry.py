"""The lab's Docker Hub mirror: fill it with the lab's images under their upstream names.

Its storage lives in the cache directory, so a new lab's mirror already holds what an earlier one
pushed; an image is pushed only when the mirror's copy is not the one built here (the manifest's
config digest is the local image id).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import requests

from raydeploy.lab.engine import Engine, EngineError
from raydeploy.lab.images import Recipe

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


class RegistryError(EngineError):
    """The mirror did not start or did not take an image."""


def wait_for_registry(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                return
        except requests.RequestException as error:
            last = str(error)
        time.sleep(0.3)
    raise RegistryError(f"The lab's mirror on 127.0.0.1:{port} did not answer in {timeout_s:.0f} s ({last}).")


def served_config_digest(port: int, reference: str) -> str | None:
    """The config digest (image id) the mirror serves for REFERENCE (name:tag), or None."""
    name, _, tag = reference.rpartition(":")
    if "/" not in name:
        name = f"library/{name}"
    response = requests.get(
        f"http://127.0.0.1:{port}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_V2}, timeout=10
    )
    if response.status_code != 200:
        return None
    return response.json().get("config", {}).get("digest")


def push_to_mirror(engine: Engine, port: int, local_tag: str, mirror_ref: str, progress: Callable[[str], None]) -> bool:
    """Push the local image LOCAL_TAG into the mirror as MIRROR_REF (a Docker Hub name: `NAME:TAG` or
    `ORG/NAME:TAG`) unless the mirror already serves that very image; True when it was pushed."""
    local = engine.inspect("image", local_tag)
    if local is None:
        raise RegistryError(f"{local_tag} is not built; run `raydeploy lab up` again to build it.")
    if served_config_digest(port, mirror_ref) == local["Id"]:
        return False
    progress(f"pushing {mirror_ref} into the mirror")
    mirror_name = mirror_ref if "/" in mirror_ref else f"library/{mirror_ref}"
    target = f"127.0.0.1:{port}/{mirror_name}"
    engine.run(["tag", local_tag, target])
    try:
        engine.run(["push", target])
    finally:
        engine.run(["rmi", target], check=False)
    return True


def fill_mirror(engine: Engine, port: int, images: Sequence[Recipe], progress: Callable[[str], None]) -> list[str]:
    """Push every image whose mirrored copy differs from the local one; the references pushed."""
    pushed = []
    for recipe in images:
        assert recipe.mirror_ref is not None
        if push_to_mirror(engine, port, recipe.local_tag, recipe.mirror_ref, progress):
            pushed.append(recipe.mirror_ref)
    return pushed
