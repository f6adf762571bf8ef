"""Install the Docker engine and its daemon.json; restart Docker only when that file changed."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebArch, DebPackages
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server, systemd

from deploys.gpus import install_container_toolkit
from deploys.settings import Settings
from templates import TEMPLATES

DOCKER_CE_PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"]
DOCKER_CE_KEYRING = "/etc/apt/keyrings/docker.asc"


@deploy("Install Docker")
def install_docker(settings: Settings) -> None:
    """Docker from `settings.docker_source`, daemon.json from its template, the service enabled and running;
    on a gpu: nvidia host also NVIDIA's Container Toolkit, whose runtime daemon.json registers.

    + settings: this host's settings (docker_source, log rotation, mirrors, data-root, docker_users)
    """
    daemon_json = files.template(
        name="Render /etc/docker/daemon.json",
        src=str(TEMPLATES / "docker" / "daemon.json.j2"),
        dest="/etc/docker/daemon.json",
        settings=settings,
        mode="644",
        create_remote_dir=True,
    )
    if settings.docker_source == "distro":
        apt.packages(
            name="Install docker.io (distribution package)",
            packages=["docker.io"],
            update=_missing(["docker.io"]),
            cache_time=3600,
        )
    else:
        _docker_ce_repository()
        apt.packages(
            name="Install docker-ce (Docker's repository)",
            packages=DOCKER_CE_PACKAGES,
            update=_missing(DOCKER_CE_PACKAGES),
            cache_time=3600,
        )
    # Before Docker (re)starts: daemon.json names the toolkit's runtime on a GPU host.
    install_container_toolkit(settings)
    systemd.service(
        name="Docker enabled and running; restarted when daemon.json changed",
        service="docker.service",
        running=True,
        enabled=True,
        restarted=daemon_json.will_change,
    )
    for user in settings.docker_users:
        server.user(name=f"{user} in the docker group", user=user, groups=["docker"], append=True)


def _missing(packages: list[str]) -> bool:
    """Whether any of PACKAGES is not installed: only then is apt's package list refreshed, so a
    re-run a day later changes nothing instead of running `apt-get update` on every host."""
    installed = host.get_fact(DebPackages)
    return any(package not in installed for package in packages)


def _docker_ce_repository() -> None:
    """Docker's apt key and repository for this host's distribution and release."""
    distribution = host.get_fact(LinuxDistribution)
    distro_id = (distribution.get("name") or "").lower()
    codename = (distribution.get("release_meta") or {}).get("VERSION_CODENAME", "")
    architecture = host.get_fact(DebArch)
    apt.packages(
        name="Packages to fetch Docker's key", packages=["ca-certificates", "curl"], update=True, cache_time=3600
    )
    files.directory(name="Directory for apt keyrings", path="/etc/apt/keyrings", mode="755")
    files.download(
        name="Docker's apt key",
        src=f"https://download.docker.com/linux/{distro_id}/gpg",
        dest=DOCKER_CE_KEYRING,
        mode="644",
    )
    files.put(
        name="Docker's apt repository",
        src=StringIO(sources_line(distro_id, codename, architecture)),
        dest="/etc/apt/sources.list.d/docker.list",
        mode="644",
    )


def sources_line(distro_id: str, codename: str, architecture: str) -> str:
    """Docker's apt repository for this distribution, release and architecture (dpkg's name for it)."""
    return (
        f"deb [arch={architecture} signed-by={DOCKER_CE_KEYRING}] "
        f"https://download.docker.com/linux/{distro_id} {codename} stable\n"
    )
