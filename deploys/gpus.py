"""GPU hosts (`gpu: nvidia`): what their driver must answer, how many GPUs Ray offers, how the Ray
container reaches them, and the NVIDIA Container Toolkit that makes `docker run --gpus` work.

Docker hands GPUs to a container only through NVIDIA's runtime (`--runtime=nvidia`, registered in
daemon.json: templates/docker/daemon.json.j2) and `--gpus`, which says which ones. Ray then sees
them through CUDA_VISIBLE_DEVICES, which it sets for each task that asks for a GPU.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.operations import apt, files

from deploys.settings import Settings

TOOLKIT_PACKAGE = "nvidia-container-toolkit"
TOOLKIT_KEY_URL = "https://nvidia.github.io/libnvidia-container/gpgkey"
TOOLKIT_KEYRING = "/etc/apt/keyrings/nvidia-container-toolkit.asc"
TOOLKIT_SOURCES = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"


def no_driver(name: str) -> str:
    return f"host {name} is marked gpu: nvidia but has no working NVIDIA driver: install the driver, then re-run"


def gpu_problems(name: str, group: str, settings: Settings, found: dict) -> list[str]:
    """What is wrong between a host's GPU settings and the GPUs nvidia-smi FOUND there (facts/gpus.py),
    each naming the group and the setting; [] when nothing is."""
    listed = [gpu["index"] for gpu in found["gpus"]]
    ids = set(listed) | {gpu["uuid"] for gpu in found["gpus"]}
    where = f"(group {group})"
    if settings.gpu == "nvidia" and found["driver"] is None:
        return [no_driver(name)]
    problems = []
    if settings.ray_num_gpus is not None and settings.ray_num_gpus > len(listed):
        problems.append(
            f"ray_num_gpus={settings.ray_num_gpus} {where} is more GPUs than the host has: nvidia-smi lists "
            f"{len(listed)}" + (f" ({', '.join(listed)})" if listed else "")
        )
    unknown = [device for device in settings.gpu_devices if device not in ids]
    if unknown:
        problems.append(
            f"gpu_devices={settings.gpu_devices!r} {where} names GPUs nvidia-smi does not list: "
            f"{', '.join(unknown)} (it lists {', '.join(listed) or 'none'})"
        )
    if settings.gpu != "nvidia" and settings.gpu_devices:
        problems.append(f"gpu_devices is set {where} but the host is not marked gpu: nvidia; set gpu: nvidia")
    return problems


def offered_gpus(settings: Settings, found_count: int | None) -> int | None:
    """How many GPUs Ray offers: ray_num_gpus when set; on a GPU host the devices listed, else every
    GPU nvidia-smi lists (FOUND_COUNT); None elsewhere (Ray's own detection, which finds none)."""
    if settings.ray_num_gpus is not None:
        return settings.ray_num_gpus
    if settings.gpu != "nvidia":
        return None
    return len(settings.gpu_devices) if settings.gpu_devices else found_count


def docker_gpu_args(settings: Settings) -> tuple[str, ...]:
    """The `docker run` arguments that give a GPU host's Ray container its GPUs: NVIDIA's runtime, and
    `--gpus all` or the listed devices (Docker's quoting: "device=0,1")."""
    if settings.gpu != "nvidia":
        return ()
    devices = f'"device={",".join(settings.gpu_devices)}"' if settings.gpu_devices else "all"
    return ("--runtime=nvidia", f"--gpus={devices}")


@deploy("NVIDIA Container Toolkit")
def install_container_toolkit(settings: Settings) -> None:
    """NVIDIA's apt key and repository, and nvidia-container-toolkit from it (which provides the
    `nvidia-container-runtime` that daemon.json registers as Docker's `nvidia` runtime).

    + settings: this host's settings (only gpu: nvidia hosts get the toolkit)
    """
    if settings.gpu != "nvidia":
        return
    files.directory(name="Directory for apt keyrings", path="/etc/apt/keyrings", mode="755")
    files.download(name="NVIDIA's apt key", src=TOOLKIT_KEY_URL, dest=TOOLKIT_KEYRING, mode="644")
    files.put(
        name="NVIDIA Container Toolkit's apt repository",
        src=StringIO(toolkit_sources_line(host.get_fact(DebArch))),
        dest=TOOLKIT_SOURCES,
        mode="644",
    )
    apt.packages(
        name="Install nvidia-container-toolkit (NVIDIA's repository)",
        packages=[TOOLKIT_PACKAGE],
        update=TOOLKIT_PACKAGE not in host.get_fact(DebPackages),
        cache_time=3600,
    )


def toolkit_sources_line(architecture: str) -> str:
    """NVIDIA's stable apt repository for this architecture, trusted only with NVIDIA's key (an armored
    .asc key file: apt reads it as it is, no gpg --dearmor needed)."""
    return (
        f"deb [signed-by={TOOLKIT_KEYRING}] https://nvidia.github.io/libnvidia-container/stable/deb/{architecture} /\n"
    )
