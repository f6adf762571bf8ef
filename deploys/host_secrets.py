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


# Alertmanager's directory, mounted whole (read-only) at /etc/alertmanager: a file replaced in it is seen
# at once, and Alertmanager reads the *_file secrets at each notice. Its config holds the generic
# webhook's URL (0.25 has no url_file for webhooks), so the config is a secret file too.
ALERTMANAGER_DIR = f"{CONFIG_DIR}/alertmanager"
ALERTMANAGER_MOUNT = "/etc/alertmanager"
ALERTMANAGER_CONFIG = f"{ALERTMANAGER_DIR}/alertmanager.yml"
# Where a new config waits for `amtool check-config` before it replaces the running one's.
ALERTMANAGER_CANDIDATE_DIR = f"{CONFIG_DIR}/alertmanager-candidate"
# The receivers' secrets the operator puts in <state_dir>/secrets (mode 0600), by receiver.
ALERT_SECRETS = {"webhook": "alert-webhook-url", "slack": "alert-slack-url", "email": "alert-smtp-password"}
ALERT_SECRET_FILES = {"slack": "slack-api-url", "email": "smtp-password"}


class MissingAlertSecret(Exception):
    """A receiver the settings route alerts to has no secret in the state directory; the message says where."""


def alert_receivers(settings: Settings) -> list[str]:
    """The receivers any severity routes to, each once, in a fixed order."""
    routed = {*settings.alert_critical_receivers, *settings.alert_warning_receivers}
    return [receiver for receiver in ALERT_SECRETS if receiver in routed]


def alert_secret(settings: Settings, receiver: str, read: Callable[[str], str | None]) -> str:
    """The secret of RECEIVER (read from the state directory by READ, never generated)."""
    name = ALERT_SECRETS[receiver]
    value = read(name)
    if not value:
        raise MissingAlertSecret(
            f"alerts are routed to {receiver} (alert_critical_receivers / alert_warning_receivers), but "
            f"{settings.state_dir}/secrets/{name} does not exist: put the {receiver} secret there "
            "(one line, mode 0600) and deploy again; nothing was changed."
        )
    return value


def alert_secret_files(settings: Settings, read: Callable[[str], str | None]) -> list[SecretFile]:
    """Alertmanager's secret files beside its config: the Slack webhook URL, the SMTP password (when used)."""
    used = alert_receivers(settings)
    if "email" in used and not settings.alert_smtp_username:
        used.remove("email")  # no authentication, no password
    return [
        SecretFile(
            f"{ALERTMANAGER_DIR}/{ALERT_SECRET_FILES[receiver]} (read by Alertmanager)",
            f"{ALERTMANAGER_DIR}/{ALERT_SECRET_FILES[receiver]}",
            alert_secret(settings, receiver, read),
            settings.alertmanager_container_uid,
        )
        for receiver in used
        if receiver in ALERT_SECRET_FILES
    ]
