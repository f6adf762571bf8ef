"""Which Ray release (and Python minor version) an image carries, read from its tag, and what a change
of release means for the cluster.

Ray refuses nodes of different Ray or Python versions in one cluster and has no rolling upgrade, so
a change of release restarts every node together, and the new cluster keeps its GCS tables in Redis
under a namespace of its own (`RAY_external_storage_namespace`), so that it never reads the old
cluster's state; the old namespace is deleted once the new cluster is up.

The release is read from the tag as Ray's images spell it (`rayproject/ray:2.60.0-py311-cpu`,
`...:2.60.0-py311-gpu`, `...:2.60.0`, also when pinned by digest: `...:2.60.0-py311-cpu@sha256:...`). An image whose tag names no release is taken at its word
only for itself: two such images, or one of them and a release, count as different.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

TAG = re.compile(r":(?P<ray>\d+\.\d+\.\d+)(?:(?:-|\.)py(?P<major>\d)(?P<minor>\d{1,2}))?(?:[-.][\w.-]*)?$")


@dataclass(frozen=True)
class RayRelease:
    """A Ray release and, when the tag says, the Python minor version of an image (3.11)."""

    ray: str
    python: str | None = None

    def __str__(self) -> str:
        return f"Ray {self.ray}" + (f" (Python {self.python})" if self.python else "")


def release_of(image: str) -> RayRelease | None:
    """The release IMAGE's tag names, or None.

    >>> release_of("rayproject/ray:2.60.0-py311-cpu")
    RayRelease(ray='2.60.0', python='3.11')
    >>> release_of("registry:5000/rayproject/ray:2.59.0")
    RayRelease(ray='2.59.0', python=None)
    >>> release_of("rayproject/ray:latest") is None
    True

    An image pinned by digest as well (`tag@sha256:...`, the exact bytes a rollback goes back to) is
    read from its tag:

    >>> release_of("rayproject/ray:2.59.0-py311-cpu@sha256:" + "0" * 64)
    RayRelease(ray='2.59.0', python='3.11')
    """
    found = TAG.search(image.split("@", 1)[0])
    if not found:
        return None
    python = f"{found['major']}.{found['minor']}" if found["major"] else None
    return RayRelease(found["ray"], python)


def same_release(one: str, other: str) -> bool:
    """Whether images ONE and OTHER run the same Ray (and Python, where both tags say): the same
    image always does; images whose tags name no release never do.

    >>> same_release("rayproject/ray:2.60.0-py311-cpu", "rayproject/ray:2.60.0-py311-gpu")
    True
    >>> same_release("rayproject/ray:2.60.0-py311-cpu", "rayproject/ray:2.60.0-py310-cpu")
    False
    >>> same_release("my/ray:latest", "my/ray:stable")
    False
    """
    if one == other:
        return True
    first, second = release_of(one), release_of(other)
    if first is None or second is None or first.ray != second.ray:
        return False
    return first.python is None or second.python is None or first.python == second.python


def storage_namespace(image: str) -> str:
    """The namespace the GCS of a cluster running IMAGE keeps its tables under in Redis: one per release.

    >>> storage_namespace("rayproject/ray:2.60.0-py311-cpu")
    'raydeploy-2.60.0-py3.11'
    >>> storage_namespace("my/ray:latest")
    'raydeploy-image-5f73a19e8f94'
    """
    release = release_of(image)
    if release is None:
        return f"raydeploy-image-{hashlib.sha256(image.encode()).hexdigest()[:12]}"
    return f"raydeploy-{release.ray}" + (f"-py{release.python}" if release.python else "")


def describe_change(old_image: str, new_image: str) -> str:
    """A release change in words: "Ray 2.59.0 -> 2.60.0", or the images when a tag names no release."""
    old, new = release_of(old_image), release_of(new_image)
    if old and new:
        python = f" (Python {old.python} -> {new.python})" if old.python != new.python else ""
        return f"Ray {old.ray} -> {new.ray}{python}"
    return f"image {old_image} -> {new_image}"
