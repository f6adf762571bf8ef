"""Containers that converge: each carries a hash of its full spec; a different hash recreates it.

pyinfra 3.10's `docker.container` never recreates a container whose spec changed, so a changed
image tag or flag would be ignored. `container()` decides in one visible place: missing -> run,
spec hash differs -> remove and run, stopped -> start, otherwise nothing.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field

from pyinfra import host, logger
from pyinfra.api import OperationError, operation

from deploys.host_facts import fact_since_last_change
from facts.containers import COMPONENT_LABEL, SPEC_LABEL, Containers, ImageIds


@dataclass(frozen=True)
class HealthCheck:
    command: str
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 3
    start_period: str = "30s"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything `docker run` is given; its digest is the container's identity."""

    name: str
    component: str
    image: str
    command: tuple[str, ...] = ()
    entrypoint: str | None = None
    network: str = "host"
    restart: str = "unless-stopped"
    env: tuple[tuple[str, str], ...] = ()
    # The digest of mounted files the process reads only at start, so that changing them recreates it.
    files_digest: str = ""
    volumes: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    shm_size: str | None = None
    user: str | None = None
    health: HealthCheck | None = None
    extra_args: tuple[str, ...] = field(default=())

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def run_command(self) -> str:
        args = ["docker", "run", "--detach", f"--name={self.name}", f"--restart={self.restart}"]
        args += [f"--network={self.network}", f"--label={COMPONENT_LABEL}={self.component}"]
        args += [f"--label={SPEC_LABEL}={self.digest()}"]
        args += [f"--env={key}={value}" for key, value in self.env]
        args += [f"--volume={volume}" for volume in self.volumes]
        args += [f"--publish={port}" for port in self.publish]
        if self.shm_size:
            args.append(f"--shm-size={self.shm_size}")
        if self.user:
            args.append(f"--user={self.user}")
        if self.entrypoint is not None:
            args.append(f"--entrypoint={self.entrypoint}")
        if self.health:
            args += [
                f"--health-cmd={self.health.command}",
                f"--health-interval={self.health.interval}",
                f"--health-timeout={self.health.timeout}",
                f"--health-retries={self.health.retries}",
                f"--health-start-period={self.health.start_period}",
            ]
        args += [*self.extra_args, self.image, *self.command]
        return " ".join(shlex.quote(arg) for arg in args)


def _show_plan(what: str, spec: ContainerSpec) -> None:
    """Say what will run, exactly (specs hold no secrets: those are files mounted read-only), in a dry run too."""
    host.log(f"{what}: {spec.run_command()}", logger.info)


@operation()
def container(spec: ContainerSpec):
    """
    Run a container as SPEC says, recreating it when its spec hash label differs.

    + spec: the full container spec; its digest goes into the ``raydeploy.spec`` label

    A container of that name that raydeploy did not create (no ``raydeploy.component`` label) is
    never touched: the operation fails and says to run the cleanup-existing checkpoint.

    **Example:**

    .. code:: python

        container(name="Ray head", spec=ContainerSpec(name="ray-head", component="ray-head", image=image))
    """
    current = fact_since_last_change(Containers).get(spec.name)
    if current is None:
        _show_plan(f"will create container {spec.name}", spec)
        yield spec.run_command()
        return
    if COMPONENT_LABEL not in current["labels"]:
        raise OperationError(
            f"{host.name}: a container named {spec.name!r} exists that raydeploy did not create "
            f"(image {current['image']}); run the cleanup-existing checkpoint or remove it yourself"
        )
    if current["labels"].get(SPEC_LABEL) != spec.digest():
        _show_plan(f"will recreate container {spec.name} (its spec changed)", spec)
        yield f"docker rm --force {shlex.quote(spec.name)}"
        yield spec.run_command()
    elif not current["running"]:
        yield f"docker start {shlex.quote(spec.name)}"
    else:
        host.noop(f"container {spec.name} is running as specified")


@operation()
def images_present(images: list[str]):
    """
    Pull every one of IMAGES the host lacks (through its configured mirrors), all at once.

    + images: ``repository:tag`` references

    Called from one place for every host, this is one operation: all hosts pull together instead
    of one role after the other. A failed pull fails the operation and says which image failed; the
    other pulls are still waited for, so nothing keeps running after the operation ends.

    **Example:**

    .. code:: python

        images_present(name="Images", images=["rayproject/ray:2.60.0-py311-cpu", "redis:7.0"])
    """
    present = fact_since_last_change(ImageIds)
    missing = [image for image in dict.fromkeys(images) if image not in present]
    if not missing:
        host.noop(f"images {', '.join(images)} are present")
        return
    yield (
        DOCKER_NEEDED
        + 'pids="";'
        + "".join(f' {_pull(image)} & pids="$pids $!";' for image in missing)
        + (' failed=0; for pid in $pids; do wait "$pid" || failed=1; done; exit "$failed"')
    )


# A host without Docker is a checkpoint run out of order: say so, not "could not pull" for every image.
DOCKER_NEEDED = (
    "command -v docker >/dev/null || { echo 'Docker is not installed on this host: docker-installation comes first "
    "(raydeploy deploy --start-from docker-installation)' >&2; exit 1; }; "
)


def _pull(image: str) -> str:
    """A shell command pulling IMAGE that, on failure, says which image failed (Docker's error does not)."""
    quoted = shlex.quote(image)
    message = shlex.quote(f"could not pull {image}: check the image name and the host's registry mirrors")
    return f"( docker pull --quiet {quoted} || {{ echo {message} >&2; exit 1; }} )"


@operation()
def container_absent(container_name: str, component: str | None = None):
    """
    Remove container CONTAINER_NAME if it exists (with COMPONENT: only when it carries that component label).

    + container_name: the container's name
    + component: remove only if its ``raydeploy.component`` label has this value
    """
    current = fact_since_last_change(Containers).get(container_name)
    if current is None or (component and current["labels"].get(COMPONENT_LABEL) != component):
        host.noop(f"container {container_name} is absent")
        return
    yield f"docker rm --force {shlex.quote(container_name)}"


def wget_command(port: int, path: str) -> str:
    """A shell command that succeeds when PATH on PORT answers 200, run inside a container that has wget."""
    return f"wget -q -O /dev/null http://127.0.0.1:{port}{path}"


@operation()
def http_ready(container_name: str, port: int, path: str, timeout_s: int = 60):
    """
    Wait until PATH on PORT answers inside CONTAINER_NAME; fail after TIMEOUT_S naming it.

    + container_name: the container to ask from (it has wget)
    + port: the port
    + path: the URL path that answers 200 when ready
    + timeout_s: how long to wait
    """
    check = f"docker exec {shlex.quote(container_name)} {wget_command(port, path)}"
    yield (
        f"for _ in $(seq 1 {timeout_s}); do {check} 2>/dev/null && exit 0; sleep 1; done; "
        f"echo {shlex.quote(f'{host.name}: {container_name} not ready at :{port}{path} after {timeout_s} s')} >&2; "
        "exit 1"
    )
