"""`lab up`, `lab down`, `lab status`: bring the lab's hosts, network and mirror to the wanted state."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from raydeploy.lab import state as lab_state
from raydeploy.lab.engine import Engine, EngineError
from raydeploy.lab.images import (
    DEFAULT_RAY_VERSION,
    HOST_IMAGE,
    RAY_RELEASE,
    REGISTRY_IMAGE,
    ImageBuilder,
    Recipe,
    cache_dir,
    check_ray_release,
    ray_mirror_ref,
    recipes,
    shared_cache_lock,
)
from raydeploy.lab.registry import fill_mirror, push_to_mirror, served_config_digest, wait_for_registry
from raydeploy.lab.state import (
    HEAD_SERVICE_PORTS,
    LAB_LABEL,
    REGISTRY_PORT,
    ROLE_LABEL,
    LabHost,
    LabState,
)

MIN_WORKERS, MAX_WORKERS = 1, 8
SUBNET_POOL = ipaddress.ip_network("10.213.0.0/16")
REGISTRY_HOST_INDEX, HEAD_HOST_INDEX = 2, 10
BOOT_TIMEOUT_S = 90
# What LAB.md found a systemd host needs here: everything but --privileged (CAP_SYS_RESOURCE is withheld).
HOST_RUN_FLAGS = [
    "--cap-add=ALL",
    "--cap-drop=SYS_RESOURCE",
    "--security-opt=seccomp=unconfined",
    "--security-opt=apparmor=unconfined",
    "--security-opt=systempaths=unconfined",
    "--device-cgroup-rule=a *:* rwm",
    "--tmpfs=/run",
    "--tmpfs=/run/lock",
    "--tmpfs=/tmp",
    "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--cgroupns=host",
    "--shm-size=1g",
]

Progress = Callable[[str], None]


class LabError(RuntimeError):
    """The lab could not be brought to the wanted state; the message says why and what to do."""


@dataclass
class UpReport:
    """What `lab up` did; an empty report means the lab was already as asked."""

    built_images: list[str] = field(default_factory=list)
    pushed_images: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # (before, after) when the lab's current Ray version changed.
    ray_switched: tuple[str, str] | None = None
    state_changed: bool = False

    @property
    def changed(self) -> bool:
        return bool(
            self.built_images
            or self.pushed_images
            or self.created
            or self.started
            or self.removed
            or self.ray_switched
            or self.state_changed
        )


@dataclass(frozen=True)
class RayChoice:
    """The Ray version `lab up` makes current, the name the mirror serves its image by, and whether
    the lab builds that image from PyPI (False: an image put in the mirror by `Lab.push_image`)."""

    version: str
    mirror_ref: str
    from_pypi: bool


def choose_ray(previous: LabState | None, asked: str | None) -> RayChoice:
    """`--ray-version` when given, else the lab's current version (growing a lab keeps it), else the default.

    A version the lab recorded with an image of its own (pushed by `Lab.push_image`) is switched to
    as it is; any other must be a Ray release, built from PyPI.
    """
    version = asked or (previous.ray_version if previous else DEFAULT_RAY_VERSION)
    recorded = previous.ray_images.get(version) if previous else None
    if recorded and recorded != ray_mirror_ref(version):
        return RayChoice(version, recorded, from_pypi=False)
    check_ray_release(version)
    return RayChoice(version, ray_mirror_ref(version), from_pypi=True)


def validate_workers(workers: int) -> None:
    if not MIN_WORKERS <= workers <= MAX_WORKERS:
        raise LabError(f"--workers {workers} is out of range: a lab has {MIN_WORKERS} to {MAX_WORKERS} workers.")


def host_names(workers: int) -> list[tuple[str, str]]:
    return [("head", "head")] + [(f"worker-{index}", "worker") for index in range(1, workers + 1)]


def published_ports(role: str) -> list[int]:
    """The container ports a host of ROLE publishes on 127.0.0.1: SSH, and the head's services."""
    return [22, *HEAD_SERVICE_PORTS.values()] if role == "head" else [22]


PORT_CLASH_ATTEMPTS = 4


def loopback_publishes(ports: list[int]) -> list[str]:
    """Publish each container port of PORTS on its own loopback port, chosen now and free at this moment.

    Docker's own choice (`127.0.0.1::PORT`) is made again at every start, so a restarted lab host
    (a "reboot") would come back on other ports than the lab's state and inventory name; a port
    chosen here stays the container's across restarts. All probes stay bound until every port is
    chosen, so one container never gets the same port twice.
    """
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in ports]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [
            f"--publish=127.0.0.1:{probe.getsockname()[1]}:{port}" for probe, port in zip(probes, ports, strict=True)
        ]


def is_port_clash(error: EngineError) -> bool:
    return "port is already allocated" in str(error) or "address already in use" in str(error)


class Lab:
    """One named lab on this machine's Docker engine."""

    def __init__(self, name: str, engine: Engine | None = None, progress: Progress = print) -> None:
        self.name = name
        self.engine = engine or Engine()
        self.progress = progress
        self.network = f"{name}-net"
        self.registry_container = f"{name}-registry"
        self.label = f"{LAB_LABEL}={name}"

    def container_name(self, host: str) -> str:
        return f"{self.name}-{host}"

    # ---- up -------------------------------------------------------------------------------

    def up(self, workers: int = 2, ray_version: str | None = None) -> tuple[LabState, UpReport]:
        """Create the lab or bring it to WORKERS workers, with RAY_VERSION current (None: keep the lab's).

        Another RAY_VERSION on an existing lab is built if needed and pushed into the mirror beside
        the versions already there, and becomes the one the lab inventory gives as ray_image.
        """
        validate_workers(workers)
        self.engine.ping()
        report = UpReport()
        previous = self._previous_state()
        ray = choose_ray(previous, ray_version)
        self._refuse_foreign_names(workers)
        with shared_cache_lock(self.progress):
            subnet, registry_port, mirrored = self._images_and_mirror(ray, previous, report)
        network = ipaddress.ip_network(subnet)
        registry_address = str(network[REGISTRY_HOST_INDEX])
        if not ray.from_pypi and served_config_digest(registry_port, ray.mirror_ref) is None:
            raise LabError(
                f"The lab's mirror no longer serves {ray.mirror_ref} (Ray {ray.version!r} of lab {self.name!r}); "
                f"push it again with Lab.push_image, or pick a release with --ray-version."
            )
        if previous and previous.ray_version != ray.version:
            report.ray_switched = (previous.ray_version, ray.version)
        key = self._ensure_key_pair()
        wanted = host_names(workers)
        report.removed += self._remove_extra_workers({name for name, _ in wanted})
        hosts = self._ensure_hosts(wanted, network, key, report)
        known_hosts, ssh_config = self._write_ssh_files(hosts, key)
        state = LabState(
            name=self.name,
            ray_version=ray.version,
            network=self.network,
            subnet=subnet,
            registry_container=self.registry_container,
            registry_address=f"{registry_address}:{REGISTRY_PORT}",
            registry_published_port=registry_port,
            ssh_user="root",
            ssh_key=str(key),
            known_hosts=str(known_hosts),
            ssh_config=str(ssh_config),
            images={
                **{recipe.key: recipe.mirror_ref for recipe in mirrored if recipe.mirror_ref},
                "ray": ray.mirror_ref,
            },
            hosts=hosts,
            ray_images={**(previous.ray_images if previous else {}), ray.version: ray.mirror_ref},
        )
        report.state_changed = previous is None or previous.to_json() != state.to_json()
        lab_state.save(state)
        return state, report

    def _images_and_mirror(
        self, ray: RayChoice, previous: LabState | None, report: UpReport
    ) -> tuple[str, int, list[Recipe]]:
        """The lab's images built and pushed into its mirror: (subnet, the mirror's port, the mirrored recipes)."""
        builder = ImageBuilder(self.engine, self.progress)
        if ray.from_pypi:
            builder.ray_wheels(ray.version)  # a version PyPI does not have stops here, before any change
        built_ray = ray.version if ray.from_pypi else None
        report.built_images = builder.ensure_all(built_ray)
        subnet = self._ensure_network(previous)
        registry_address = str(ipaddress.ip_network(subnet)[REGISTRY_HOST_INDEX])
        registry_port = self._ensure_registry(registry_address, report)
        mirrored = [recipe for recipe in recipes(built_ray) if recipe.mirror_ref]
        report.pushed_images = fill_mirror(self.engine, registry_port, mirrored, self.progress)
        return subnet, registry_port, mirrored

    def push_image(self, local_tag: str, mirror_ref: str, ray_version: str | None = None) -> bool:
        """Put the local image LOCAL_TAG into this lab's mirror as MIRROR_REF; True when it was pushed,
        False when the mirror already served that very image.

        MIRROR_REF is a Docker Hub name (`ORG/NAME:TAG`, or `NAME:TAG` for library images): the lab
        hosts pull it by that name through the mirror. The mirror's storage is shared by every lab on
        this machine and kept between labs; give an image of your own a tag of its own. Label the
        local image `raydeploy.lab=<lab name>` and `lab down` removes it.

        With RAY_VERSION, the image is also recorded as that Ray version of the lab and made its current
        one, as `lab up --ray-version` does with a release: the lab inventory's ray_image becomes
        MIRROR_REF. RAY_VERSION must not be a release number (that name is PyPI's build), e.g.
        `2.60.0-broken`; `lab up --ray-version 2.60.0-broken` switches back to it later.
        """
        state = lab_state.load(self.name)
        if ray_version and RAY_RELEASE.fullmatch(ray_version) and mirror_ref != ray_mirror_ref(ray_version):
            raise LabError(
                f"Ray version {ray_version!r} names the release `lab up --ray-version {ray_version}` builds; "
                f"record {mirror_ref} under a name of its own, e.g. {ray_version}-custom."
            )
        with shared_cache_lock(self.progress):
            pushed = push_to_mirror(self.engine, state.registry_published_port, local_tag, mirror_ref, self.progress)
        if ray_version is not None:
            state.ray_images[ray_version] = mirror_ref
            state.ray_version = ray_version
            state.images["ray"] = mirror_ref
            lab_state.save(state)
        return pushed

    def _previous_state(self) -> LabState | None:
        try:
            return lab_state.load(self.name)
        except lab_state.NoLabError:
            return None

    def _refuse_foreign_names(self, workers: int) -> None:
        """Stop before touching anything when one of our names is taken by something not ours."""
        names = [self.container_name(host) for host, _ in host_names(workers)] + [self.registry_container]
        for kind, object_names in (("container", names), ("network", [self.network])):
            for object_name in object_names:
                found = self.engine.inspect(kind, object_name)
                if found is None:
                    continue
                labels = (found.get("Config") or {}).get("Labels") or found.get("Labels") or {}
                if labels.get(LAB_LABEL) != self.name:
                    raise LabError(
                        f"A {kind} named {object_name!r} already exists and is not part of lab "
                        f"{self.name!r}. Remove it (`docker {kind} rm {object_name}`) or pick "
                        f"another lab name with --name."
                    )

    def _ensure_network(self, previous: LabState | None) -> str:
        found = self.engine.inspect("network", self.network)
        if found is not None:
            return found["IPAM"]["Config"][0]["Subnet"]
        tried: list[str] = []
        while True:
            subnet = self._free_subnet(tried)
            self.progress(f"creating network {self.network} ({subnet})")
            try:
                self.engine.run(
                    ["network", "create", "--driver", "bridge", "--subnet", subnet, "--label", self.label, self.network]
                )
                return subnet
            except EngineError as error:
                # Another lab coming up at the same moment took the same free /24: take the next one.
                if "overlaps" not in str(error):
                    raise
                tried.append(subnet)

    def _free_subnet(self, tried: list[str] | None = None) -> str:
        taken = [ipaddress.ip_network(subnet) for subnet in tried or []]
        for network_id in self.engine.run(["network", "ls", "--quiet"]).stdout.split():
            found = self.engine.inspect("network", network_id) or {}
            for config in (found.get("IPAM") or {}).get("Config") or []:
                if config.get("Subnet"):
                    taken.append(ipaddress.ip_network(config["Subnet"], strict=False))
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=False).stdout
        for line in routes.splitlines():
            destination = line.split()[0] if line.strip() else "default"
            if destination != "default":
                taken.append(ipaddress.ip_network(destination, strict=False))
        for candidate in SUBNET_POOL.subnets(new_prefix=24):
            if not any(candidate.overlaps(other) for other in taken):
                return str(candidate)
        raise LabError(
            f"No free /24 is left in {SUBNET_POOL} for the lab network; remove old ones: `raydeploy lab down --all`."
        )

    def _ensure_registry(self, address: str, report: UpReport) -> int:
        storage = cache_dir() / "registry-storage"
        storage.mkdir(parents=True, exist_ok=True)
        status = self._container_status(self.registry_container)
        if status is None:
            self.progress(f"starting the mirror registry at {address}:{REGISTRY_PORT}")
            self._run_publishing(
                self.registry_container,
                [
                    "--hostname=registry",
                    f"--label={self.label}",
                    f"--label={ROLE_LABEL}=registry",
                    f"--network={self.network}",
                    f"--ip={address}",
                    "--restart=unless-stopped",
                    f"--volume={storage}:/var/lib/registry",
                ],
                [REGISTRY_PORT],
                REGISTRY_IMAGE,
            )
            report.created.append(self.registry_container)
        elif status != "running":
            self.engine.run(["start", self.registry_container])
            report.started.append(self.registry_container)
        port = self._published_port(self.registry_container, REGISTRY_PORT)
        wait_for_registry(port)
        return port

    def _ensure_key_pair(self) -> Path:
        key = lab_state.lab_dir(self.name) / "id_ed25519"
        if key.exists():
            return key
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"raydeploy-lab-{self.name}", "-f", str(key)],
            check=True,
        )
        return key

    def _remove_extra_workers(self, wanted: set[str]) -> list[str]:
        removed = []
        for container in self.engine.ids_with_label("container", f"{ROLE_LABEL}=worker"):
            found = self.engine.inspect("container", container) or {}
            labels = found.get("Config", {}).get("Labels") or {}
            if labels.get(LAB_LABEL) != self.name:
                continue
            if container.removeprefix(f"{self.name}-") not in wanted:
                self.progress(f"removing {container} (not in the wanted worker count)")
                self.engine.run(["rm", "--force", "--volumes", container])
                self.engine.run(["volume", "rm", "--force", f"{container}-docker"], check=False)
                removed.append(container)
        return removed

    def _ensure_hosts(
        self,
        wanted: list[tuple[str, str]],
        network: ipaddress.IPv4Network | ipaddress.IPv6Network,
        key: Path,
        report: UpReport,
    ) -> list[LabHost]:
        def ensure(index: int, name: str, role: str) -> LabHost:
            container = self.container_name(name)
            address = str(network[HEAD_HOST_INDEX + index])
            status = self._container_status(container)
            if status is None:
                self._create_host(container, name, role, address, key)
                report.created.append(container)
            elif status != "running":
                self.engine.run(["start", container])
                report.started.append(container)
            self._wait_until_booted(container)
            services = {service: port for service, port in HEAD_SERVICE_PORTS.items() if role == "head"}
            published = self._published_ports(container, [port for port in published_ports(role) if port != 22])
            return LabHost(
                name=name,
                role=role,
                container=container,
                cluster_address=address,
                ssh_port=self._published_port(container, 22),
                published={service: published[port] for service, port in services.items() if port in published},
            )

        with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            futures = [pool.submit(ensure, index, name, role) for index, (name, role) in enumerate(wanted)]
            return [future.result() for future in futures]

    def _create_host(self, container: str, name: str, role: str, address: str, key: Path) -> None:
        self.progress(f"starting host {name} at {address}")
        volume = f"{container}-docker"
        self.engine.run(["volume", "create", "--label", self.label, volume])
        self._run_publishing(
            container,
            [
                f"--hostname={name}",
                f"--label={self.label}",
                f"--label={ROLE_LABEL}={role}",
                f"--network={self.network}",
                f"--ip={address}",
                *HOST_RUN_FLAGS,
                f"--volume={volume}:/var/lib/docker",
                f"--volume={key}.pub:/root/.ssh/authorized_keys:ro",
            ],
            published_ports(role),
            HOST_IMAGE,
        )

    def _run_publishing(self, container: str, options: list[str], ports: list[int], image: str) -> None:
        """`docker run` CONTAINER from IMAGE with OPTIONS and PORTS published on loopback ports chosen now.

        A port chosen free can be taken before Docker binds it (another lab starting at the same
        moment picks ports too): Docker then leaves the container created but not started, so it is
        removed and the run tried again with new ports, PORT_CLASH_ATTEMPTS times in all.
        """
        for attempt in range(1, PORT_CLASH_ATTEMPTS + 1):
            try:
                self.engine.run(["run", "--detach", f"--name={container}", *options, *loopback_publishes(ports), image])
                return
            except EngineError as error:
                if not is_port_clash(error):
                    raise
                self.engine.run(["rm", "--force", container], check=False)
                if attempt == PORT_CLASH_ATTEMPTS:
                    raise LabError(
                        f"A port clash stopped the lab {PORT_CLASH_ATTEMPTS} times in a row: {error}. "
                        f"Free loopback ports or run `raydeploy lab down` and try again."
                    ) from error
                self.progress(f"  {container}: a loopback port was taken meanwhile; trying other ports")

    def _container_status(self, container: str) -> str | None:
        found = self.engine.inspect("container", container)
        return None if found is None else found["State"]["Status"]

    def _published_port(self, container: str, port: int) -> int:
        found = self.engine.inspect("container", container) or {}
        bindings = (found.get("NetworkSettings") or {}).get("Ports") or {}
        for binding in bindings.get(f"{port}/tcp") or []:
            if binding.get("HostIp") == "127.0.0.1":
                return int(binding["HostPort"])
        raise LabError(f"{container} does not publish port {port} on 127.0.0.1; run `raydeploy lab down` and up again.")

    def _published_ports(self, container: str, ports: list[int]) -> dict[int, int]:
        """Which of PORTS CONTAINER publishes on 127.0.0.1, and where: a head made by an earlier version lacks
        the services added since (Alertmanager's), which `lab down` and `lab up` give it."""
        found = self.engine.inspect("container", container) or {}
        bindings = (found.get("NetworkSettings") or {}).get("Ports") or {}
        return {
            port: int(binding["HostPort"])
            for port in ports
            for binding in bindings.get(f"{port}/tcp") or []
            if binding.get("HostIp") == "127.0.0.1"
        }

    def _wait_until_booted(self, container: str) -> None:
        """systemd has finished booting and sshd answers inside the host."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            probe = self.engine.run(
                ["exec", container, "sh", "-c", "systemctl is-system-running; systemctl is-active ssh"],
                check=False,
            )
            last = probe.stdout.strip().replace("\n", ", ")
            lines = probe.stdout.split()
            if len(lines) == 2 and lines[0] in ("running", "degraded") and lines[1] == "active":
                return
            time.sleep(0.5)
        failed = self.engine.run(["exec", container, "systemctl", "--failed", "--no-legend"], check=False)
        raise LabError(
            f"{container} did not finish booting in {BOOT_TIMEOUT_S} s (systemd, ssh: {last or 'no answer'}). "
            f"Failed units: {failed.stdout.strip() or 'none'}. Inspect it with `docker logs {container}`."
        )

    def _write_ssh_files(self, hosts: list[LabHost], key: Path) -> tuple[Path, Path]:
        """Pin each host's own key (made at its first boot) and write an ssh_config naming every host.

        `ssh -F ssh_config worker-1` then logs in with strict host key checking, as pyinfra does.
        """
        known_lines, config_lines = [], []
        directory = lab_state.lab_dir(self.name)
        known_hosts = directory / "known_hosts"
        for host in hosts:
            keys = self.engine.run(["exec", host.container, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"]).stdout
            for key_line in keys.splitlines():
                key_type, key_data = key_line.split()[:2]
                known_lines.append(f"[127.0.0.1]:{host.ssh_port} {key_type} {key_data}")
            config_lines += [
                f"Host {host.name} {host.container}",
                "  HostName 127.0.0.1",
                f"  Port {host.ssh_port}",
                "  User root",
                f"  IdentityFile {key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {known_hosts}",
                "  StrictHostKeyChecking yes",
                "  LogLevel ERROR",
                "",
            ]
        known_hosts.write_text("\n".join(known_lines) + "\n")
        ssh_config = directory / "ssh_config"
        ssh_config.write_text("\n".join(config_lines))
        return known_hosts, ssh_config

    # ---- status and down ------------------------------------------------------------------

    def status(self) -> dict:
        """The state file joined with what the engine says about each container now."""
        state = lab_state.load(self.name)
        containers = {host.container for host in state.hosts} | {state.registry_container}
        live = {container: self._container_status(container) or "missing" for container in containers}
        return {
            "name": state.name,
            "ray_version": state.ray_version,
            "ray_image": state.ray_image,
            "ray_images": dict(sorted(state.ray_images.items())),
            "network": {"name": state.network, "subnet": state.subnet},
            "registry": {
                "container": state.registry_container,
                "mirror": state.registry_mirror,
                "published": f"127.0.0.1:{state.registry_published_port}",
                "status": live[state.registry_container],
                "images": state.images,
            },
            "ssh": {"user": state.ssh_user, "key": state.ssh_key, "config": state.ssh_config},
            "hosts": [
                {
                    "name": host.name,
                    "role": host.role,
                    "container": host.container,
                    "cluster_address": host.cluster_address,
                    "ssh": f"127.0.0.1:{host.ssh_port}",
                    "status": live[host.container],
                }
                for host in state.hosts
            ],
            "urls": state.service_urls(),
            "state_file": str(lab_state.state_path(self.name)),
        }

    def down(self) -> dict[str, list[str]]:
        """Remove every container, volume, network and image labelled as this lab's, and its state and key.

        The images `lab up` builds are shared by every lab and stay; only images labelled with this
        lab's name (a test's own, pushed with `push_image`) go. The mirror's storage stays.
        """
        self.engine.ping()
        removed: dict[str, list[str]] = {"containers": [], "volumes": [], "networks": [], "images": []}
        containers = self.engine.ids_with_label("container", self.label)
        if containers:
            self.progress(f"removing {len(containers)} containers")
            self.engine.run(["rm", "--force", "--volumes", *containers])
            removed["containers"] = containers
        volumes = self.engine.ids_with_label("volume", self.label)
        if volumes:
            self.engine.run(["volume", "rm", "--force", *volumes])
            removed["volumes"] = volumes
        networks = self.engine.ids_with_label("network", self.label)
        if networks:
            self.engine.run(["network", "rm", *networks])
            removed["networks"] = networks
        images = self.engine.ids_with_label("image", self.label)
        if images:
            self.engine.run(["image", "rm", "--force", *images])
            removed["images"] = images
        shutil.rmtree(lab_state.lab_dir(self.name), ignore_errors=True)
        return removed


def all_lab_names(engine: Engine) -> list[str]:
    """Every lab with something left on this engine, by the value of its label."""
    names = set()
    for kind in ("container", "volume", "network", "image"):
        fmt = "{{.Labels}}"
        extra = ["--all"] if kind == "container" else []
        listed = engine.run([kind, "ls", *extra, "--filter", f"label={LAB_LABEL}", "--format", fmt]).stdout
        for labels in listed.splitlines():
            for pair in labels.split(","):
                key, _, value = pair.partition("=")
                if key == LAB_LABEL:
                    names.add(value)
    return sorted(names)


def ssh_command(state: LabState, host: LabHost, command: list[str]) -> list[str]:
    """The ssh command line that logs into HOST with the lab's key, checking its pinned host key."""
    return ["ssh", "-F", state.ssh_config, host.name, *command]


def describe(report: UpReport) -> list[str]:
    lines = []
    for label, items in (
        ("built images", report.built_images),
        ("pushed to the mirror", report.pushed_images),
        ("created", report.created),
        ("started", report.started),
        ("removed", report.removed),
    ):
        if items:
            lines.append(f"{label}: {', '.join(items)}")
    if report.ray_switched:
        before, after = report.ray_switched
        lines.append(f"current Ray version: {before} -> {after} (the lab inventory's ray_image follows)")
    return lines
