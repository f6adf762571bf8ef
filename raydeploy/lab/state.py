"""The lab's state file: what `lab up` made, read by `lab status`, `lab ssh` and inventories/lab.py."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_LAB_NAME = "raydeploy"
LAB_LABEL = "raydeploy.lab"
ROLE_LABEL = "raydeploy.lab.role"
HEAD_SERVICE_PORTS = {"ray-dashboard": 8265, "prometheus": 9090, "grafana": 3000, "alertmanager": 9093}
REGISTRY_PORT = 5000


class NoLabError(RuntimeError):
    """No lab of that name is up on this machine."""


def lab_name() -> str:
    """The lab this process works on: RAYDEPLOY_LAB, or the default."""
    return os.environ.get("RAYDEPLOY_LAB") or DEFAULT_LAB_NAME


def labs_home() -> Path:
    """Where labs keep their state and keys (RAYDEPLOY_LAB_HOME, default ~/.local/state/raydeploy/labs)."""
    configured = os.environ.get("RAYDEPLOY_LAB_HOME")
    if configured:
        return Path(configured)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "raydeploy" / "labs"


def lab_dir(name: str) -> Path:
    return labs_home() / name


@dataclass
class LabHost:
    """One lab host as pyinfra and the operator reach it."""

    name: str
    role: str
    container: str
    cluster_address: str
    ssh_port: int
    published: dict[str, int] = field(default_factory=dict)


@dataclass
class LabState:
    """Everything `lab up` made; written as JSON, mode 0600, beside the lab's SSH key."""

    name: str
    ray_version: str
    network: str
    subnet: str
    registry_container: str
    registry_address: str
    registry_published_port: int
    ssh_user: str
    ssh_key: str
    known_hosts: str
    ssh_config: str
    images: dict[str, str]
    hosts: list[LabHost]
    # Every Ray version whose image the lab's mirror holds, by version; `ray_version` is the current one.
    ray_images: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A state file written before labs held several versions knows only the current one.
        if not self.ray_images and "ray" in self.images:
            self.ray_images = {self.ray_version: self.images["ray"]}

    @property
    def ray_image(self) -> str:
        """The current version's image, as the mirror serves it: what the lab inventory gives as ray_image."""
        return self.ray_images.get(self.ray_version) or self.images["ray"]

    @property
    def registry_mirror(self) -> str:
        return f"http://{self.registry_address}"

    @property
    def head(self) -> LabHost:
        return next(host for host in self.hosts if host.role == "head")

    @property
    def workers(self) -> list[LabHost]:
        return [host for host in self.hosts if host.role == "worker"]

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if name in (host.name, host.container):
                return host
        known = ", ".join(host.name for host in self.hosts)
        raise KeyError(f"Lab {self.name!r} has no host {name!r}; its hosts are: {known}.")

    def service_urls(self) -> dict[str, str]:
        return {service: f"http://127.0.0.1:{port}" for service, port in self.head.published.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        raw = json.loads(text)
        raw["hosts"] = [LabHost(**host) for host in raw["hosts"]]
        return cls(**raw)


def state_path(name: str) -> Path:
    return lab_dir(name) / "state.json"


def load(name: str | None = None) -> LabState:
    """The state of lab NAME; NoLabError with the command to run when there is none."""
    name = name or lab_name()
    path = state_path(name)
    if not path.exists():
        raise NoLabError(f"No lab named {name!r} is up (no {path}): run `raydeploy lab up` first.")
    try:
        return LabState.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as error:
        raise NoLabError(
            f"The state file of lab {name!r} ({path}) is unreadable ({error}); "
            f"run `raydeploy lab up --name {name}` to rewrite it, or `raydeploy lab down --name {name}`."
        ) from error


def save(state: LabState) -> Path:
    path = state_path(state.name)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.to_json())
    temporary.chmod(0o600)
    temporary.replace(path)
    return path
