"""The lab's images: built on this machine from Debian and PyPI packages, cached by their inputs.

Every image carries a label with a hash of everything that went into it (its recipe files, build
arguments, the base image's id); an image is rebuilt only when that hash changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from raydeploy.lab.engine import Engine, EngineError

RECIPES_DIR = Path(__file__).parent / "images"
INPUTS_LABEL = "raydeploy.lab.inputs"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_TAG = f"raydeploy-lab/debian:{DEBIAN_SUITE}"
BASE_INCLUDES = ("ca-certificates",)
DEFAULT_RAY_VERSION = "2.60.0"
# Upstream tags chosen to match the Debian 12 packages inside (each recipe checks the version).
PROMETHEUS_TAG = "prom/prometheus:v2.42.0"
NODE_EXPORTER_TAG = "prom/node-exporter:v1.5.0"
ALERTMANAGER_TAG = "prom/alertmanager:v0.25.0"
REDIS_TAG = "redis:7.0"
HOST_IMAGE = f"raydeploy-lab/host:{DEBIAN_SUITE}"
REGISTRY_IMAGE = "raydeploy-lab/registry:2.8"

Progress = Callable[[str], None]


# A release as PyPI numbers Ray's (2.60.0, 2.9.0rc1); it also becomes part of an image tag.
RAY_RELEASE = re.compile(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


class ImageBuildError(EngineError):
    """An image failed to build; the message carries the failing step and its output."""


class UnknownRayVersionError(ImageBuildError):
    """The asked Ray version is not a release, or PyPI has no such release."""


def check_ray_release(ray_version: str) -> None:
    """Refuse anything that is not written as a Ray release, before any download or tag."""
    if not RAY_RELEASE.fullmatch(ray_version):
        raise UnknownRayVersionError(
            f"Ray version {ray_version!r} is not a release number like {DEFAULT_RAY_VERSION}; nothing was changed."
        )


@dataclass(frozen=True)
class Recipe:
    """One image: its recipe directory, the tag it gets here, and the name the lab mirror serves."""

    key: str
    local_tag: str
    mirror_ref: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    ray_version: str | None = None
    recipe_dir: Path | None = None

    @property
    def directory(self) -> Path:
        return self.recipe_dir or RECIPES_DIR / self.key


def ray_mirror_ref(ray_version: str) -> str:
    return f"rayproject/ray:{ray_version}-py311-cpu"


def ray_local_tag(ray_version: str) -> str:
    return f"raydeploy-lab/ray:{ray_version}-py311-cpu"


def ray_recipe(ray_version: str) -> Recipe:
    """Ray RAY_VERSION from PyPI, served by the mirror as rayproject/ray:RAY_VERSION-py311-cpu."""
    return Recipe(
        "ray",
        ray_local_tag(ray_version),
        mirror_ref=ray_mirror_ref(ray_version),
        build_args={"RAY_VERSION": ray_version},
        ray_version=ray_version,
    )


def recipes(ray_version: str | None = DEFAULT_RAY_VERSION) -> list[Recipe]:
    """Every image a lab needs, the host and registry images first; no Ray image when RAY_VERSION is None."""
    return [
        Recipe("host", HOST_IMAGE),
        Recipe("registry", REGISTRY_IMAGE),
        *([ray_recipe(ray_version)] if ray_version else []),
        Recipe("prometheus", "raydeploy-lab/prometheus:v2.42.0", mirror_ref=PROMETHEUS_TAG),
        Recipe("node-exporter", "raydeploy-lab/node-exporter:v1.5.0", mirror_ref=NODE_EXPORTER_TAG),
        Recipe("alertmanager", "raydeploy-lab/alertmanager:v0.25.0", mirror_ref=ALERTMANAGER_TAG),
        Recipe("redis", "raydeploy-lab/redis:7.0", mirror_ref=REDIS_TAG),
    ]


def cache_dir() -> Path:
    """Where downloads and the mirror's storage are kept between labs (RAYDEPLOY_CACHE_DIR)."""
    configured = os.environ.get("RAYDEPLOY_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "raydeploy"


@contextlib.contextmanager
def shared_cache_lock(progress: Progress) -> Iterator[None]:
    """Held while a lab builds images and fills the mirror, whose storage every lab shares (cache_dir).

    Labs made at the same time (side by side, or by tests run in parallel) take turns: the second
    finds the images the first built instead of building them again beside it.
    """
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "images.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("waiting for another lab that is building images or filling the mirror")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _hash_inputs(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _recipe_files_digest(directory: Path) -> list[bytes]:
    parts: list[bytes] = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            parts.append(str(path.relative_to(directory)).encode())
            parts.append(path.read_bytes())
    return parts


class ImageBuilder:
    """Builds the lab's images when their inputs changed, and says what it did."""

    def __init__(self, engine: Engine, progress: Progress) -> None:
        self.engine = engine
        self.progress = progress

    def current_inputs(self, tag: str) -> tuple[str, str] | None:
        """The (image id, inputs hash) of TAG as built here, or None when it is not."""
        found = self.engine.inspect("image", tag)
        if found is None:
            return None
        labels = (found.get("Config") or {}).get("Labels") or {}
        return found["Id"], labels.get(INPUTS_LABEL, "")

    def ensure_base(self) -> str:
        """The Debian base image's id, made with debootstrap when missing."""
        wanted = _hash_inputs(DEBIAN_SUITE, DEBIAN_MIRROR, "minbase", *BASE_INCLUDES)
        current = self.current_inputs(BASE_TAG)
        if current and current[1] == wanted:
            return current[0]
        if shutil.which("debootstrap") is None:
            raise ImageBuildError("Building the lab's Debian base needs debootstrap: `apt-get install -y debootstrap`.")
        if os.geteuid() != 0:
            raise ImageBuildError("Building the lab's Debian base with debootstrap needs root.")
        self.progress(f"building {BASE_TAG} with debootstrap ({DEBIAN_SUITE}, about 30 s)")
        with tempfile.TemporaryDirectory(prefix="raydeploy-rootfs-") as rootfs:
            boot = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_INCLUDES)}",
                    DEBIAN_SUITE,
                    rootfs,
                    DEBIAN_MIRROR,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if boot.returncode != 0:
                tail = "\n".join((boot.stdout + boot.stderr).strip().splitlines()[-25:])
                raise ImageBuildError(f"debootstrap of {DEBIAN_SUITE} failed:\n{tail}")
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            imported = subprocess.run(
                [
                    self.engine.binary,
                    "import",
                    "--change",
                    f"LABEL {INPUTS_LABEL}={wanted}",
                    "--change",
                    'CMD ["bash"]',
                    "-",
                    BASE_TAG,
                ],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                check=False,
            )
            tar.wait()
            if imported.returncode != 0:
                raise ImageBuildError(f"docker import of {BASE_TAG} failed: {imported.stderr.strip()}")
        built = self.current_inputs(BASE_TAG)
        assert built is not None
        return built[0]

    def ray_wheels(self, ray_version: str) -> Path:
        """ray[default] and its dependencies as wheels for CPython 3.11 on x86_64, kept in the cache.

        A version PyPI does not have is an UnknownRayVersionError naming it.
        """
        check_ray_release(ray_version)
        target = cache_dir() / "wheels" / f"ray-{ray_version}"
        done = target / ".complete"
        if done.exists():
            return target
        self.progress(f"downloading ray[default]=={ray_version} wheels from PyPI")
        target.mkdir(parents=True, exist_ok=True)
        platforms = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "linux_x86_64", "any"]
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        command += ["--dest", str(target), "--only-binary=:all:", "--python-version", "3.11"]
        command += ["--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
        for platform in platforms:
            command += ["--platform", platform]
        command.append(f"ray[default]=={ray_version}")
        downloaded = subprocess.run(command, capture_output=True, text=True, check=False)
        if downloaded.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            tail = "\n".join(downloaded.stderr.strip().splitlines()[-15:])
            if "No matching distribution found" in downloaded.stderr:
                raise UnknownRayVersionError(
                    f"PyPI has no Ray {ray_version} (no ray[default]=={ray_version} for CPython 3.11 on x86_64); "
                    f"nothing was changed. pip said:\n{tail}"
                )
            raise ImageBuildError(f"pip could not download ray[default]=={ray_version}:\n{tail}")
        done.write_text(ray_version)
        return target

    def ensure(self, recipe: Recipe, base_id: str) -> bool:
        """Build RECIPE if its inputs changed; True when it was built."""
        wanted = _hash_inputs(
            recipe.key,
            base_id,
            *sorted(f"{k}={v}" for k, v in recipe.build_args.items()),
            *_recipe_files_digest(recipe.directory),
        )
        current = self.current_inputs(recipe.local_tag)
        if current and current[1] == wanted:
            return False
        with tempfile.TemporaryDirectory(prefix=f"raydeploy-{recipe.key}-") as context:
            shutil.copytree(recipe.directory, context, dirs_exist_ok=True)
            if recipe.ray_version:
                shutil.copytree(self.ray_wheels(recipe.ray_version), Path(context) / "wheels", copy_function=os.link)
            self.progress(f"building {recipe.local_tag}")
            self._docker_build(recipe, context, base_id, wanted)
        return True

    def _docker_build(self, recipe: Recipe, context: str, base_id: str, wanted: str) -> None:
        args = [
            self.engine.binary,
            "build",
            "--force-rm",
            "--tag",
            recipe.local_tag,
            "--label",
            f"{INPUTS_LABEL}={wanted}",
        ]
        args += ["--build-arg", f"BASE={BASE_TAG}"]
        for key, value in recipe.build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        args.append(context)
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        output: list[str] = []
        step_start = 0
        with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as build:
            assert build.stdout is not None
            for line in build.stdout:
                output.append(line.rstrip())
                if line.startswith("Step "):
                    step_start = len(output) - 1
                    self.progress(f"  {recipe.key}: {line.strip()[:110]}")
        if build.returncode != 0:
            failing_step = "\n".join(output[step_start:][-40:])
            raise ImageBuildError(f"Building {recipe.local_tag} failed at this step:\n{failing_step}")

    def ensure_all(self, ray_version: str | None) -> list[str]:
        """Every lab image up to date (Ray's only when RAY_VERSION is given); returns the tags that were (re)built."""
        base_before = self.current_inputs(BASE_TAG)
        base_id = self.ensure_base()
        built = [] if base_before and base_before[0] == base_id else [BASE_TAG]
        for recipe in recipes(ray_version):
            if self.ensure(recipe, base_id):
                built.append(recipe.local_tag)
        return built
