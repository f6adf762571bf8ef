"""The files that carry secrets to the hosts: where each lives, what it holds, which user reads it.

A secret reaches a container only as a file mounted read-only, never as an environment variable
(`docker inspect` shows a container's environment to anyone who may use Docker) nor as an argument
(`ps` shows every process's arguments to every user of the host). Each file is 0600 and owned by
the uid of the one container user that reads it (deploys/secret_files.py); Redis, Prometheus and
Grafana drop root, so root-owned files would be unreadable to them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from deploys.settings import Settings

CONFIG_DIR = "/etc/raydeploy"
# Where a container sees the secret files mounted into it. Files hold the bare secret, no newline
# (Ray and Grafana read the whole file as the secret).
SECRETS_MOUNT = "/run/raydeploy"
RAY_TOKEN = f"{CONFIG_DIR}/ray-auth-token"
REDIS_PASSWORD = f"{CONFIG_DIR}/redis-password"
REDIS_CONF = f"{CONFIG_DIR}/redis.conf"
PROMETHEUS_TOKEN_ON_HOST = f"{CONFIG_DIR}/prometheus/ray-auth-token"
GRAFANA_PASSWORD = f"{CONFIG_DIR}/grafana-admin-password"
# Earlier versions passed secrets in these env files, so they showed in `docker inspect`: removed.
OLD_RAY_ENV_FILES = (f"{CONFIG_DIR}/ray.env", f"{CONFIG_DIR}/redis.env")
OLD_GRAFANA_ENV_FILE = f"{CONFIG_DIR}/grafana.env"

# A secret by name: generated on first use by the deploys, only read by validation.
SecretOf = Callable[[str], str]


@dataclass(frozen=True)
class SecretFile:
    """One file holding a secret; NAME is its operation's name: what it is for, never what it holds."""

    name: str
    path: str
    content: str
    owner: int

    @property
    def mounted(self) -> str:
        """Where the container that reads it sees it."""
        return f"{SECRETS_MOUNT}/{PurePosixPath(self.path).name}"

    @property
    def volume(self) -> str:
        return f"{self.path}:{self.mounted}:ro"


def ray_token_file(settings: Settings, secret_of: SecretOf) -> SecretFile | None:
    """The Ray token for a Ray container (None when token auth is off); Ray reads it at RAY_AUTH_TOKEN_PATH."""
    if settings.ray_auth_mode != "token":
        return None
    token = secret_of("ray-auth-token")
    return SecretFile(f"{RAY_TOKEN} (read by Ray)", RAY_TOKEN, token, settings.ray_container_uid)


def redis_password_file(settings: Settings, secret_of: SecretOf) -> SecretFile:
    """Redis's password for the Ray head, whose GCS keeps its tables there."""
    password = secret_of("redis-password")
    return SecretFile(f"{REDIS_PASSWORD} (read by the Ray head)", REDIS_PASSWORD, password, settings.ray_container_uid)


def redis_conf_text(settings: Settings, password: str) -> str:
    # Loopback only: the head's GCS is Redis's one client.
    return (
        f"port {settings.redis_port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n"
        "appendonly yes\nappendfsync everysec\ndir /data\n"
    )


def redis_conf_file(settings: Settings, secret_of: SecretOf) -> SecretFile:
    """Redis's config, which holds its password (`requirepass`); read by Redis's own user."""
    text = redis_conf_text(settings, secret_of("redis-password"))
    return SecretFile(f"{REDIS_CONF} (read by Redis)", REDIS_CONF, text, settings.redis_container_uid)


def prometheus_token_file(head: Settings, monitor: Settings, secret_of: SecretOf) -> SecretFile | None:
    """The Ray token Prometheus sends to the head's service discovery (None when token auth is off)."""
    if head.ray_auth_mode != "token":
        return None
    token = secret_of("ray-auth-token")
    return SecretFile(
        f"{PROMETHEUS_TOKEN_ON_HOST} (read by Prometheus)",
        PROMETHEUS_TOKEN_ON_HOST,
        token,
        monitor.prometheus_container_uid,
    )


def grafana_password_file(settings: Settings, secret_of: SecretOf) -> SecretFile:
    """Grafana's admin password; Grafana reads it at GF_SECURITY_ADMIN_PASSWORD__FILE."""
    password = secret_of("grafana-admin-password")
    return SecretFile(
        f"{GRAFANA_PASSWORD} (read by Grafana)", GRAFANA_PASSWORD, password, settings.grafana_container_uid
    )
