"""Alertmanager on the monitoring host: Prometheus's alerts grouped, routed by severity and delivered.

Its config (templates/alertmanager/) comes from the alert_* settings; the receivers' secrets (the
generic webhook's URL, Slack's incoming-webhook URL, the SMTP password) come from the state
directory, as the operator put them there, and reach the host only as 0600 files owned by
Alertmanager's user: never in output, an operation's name or a command line.

A new config is first written beside the running one's and checked by `amtool check-config` from
the Alertmanager image itself: a config that does not check stops the deploy naming the settings it
came from, before the running Alertmanager's config is touched. A config that checks replaces the
running one's and is loaded with POST /-/reload, not a restart; silences and the notification log
live in a volume.
"""

from __future__ import annotations

import re
import shlex

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import files

from deploys.components import ALERTMANAGER
from deploys.containers import ContainerSpec, HealthCheck, container, http_ready, wget_command
from deploys.credentials import read_secret
from deploys.host_secrets import (
    ALERTMANAGER_CANDIDATE_DIR,
    ALERTMANAGER_CONFIG,
    ALERTMANAGER_DIR,
    ALERTMANAGER_MOUNT,
    MissingAlertSecret,
    SecretFile,
    alert_receivers,
    alert_secret,
    alert_secret_files,
)
from deploys.monitoring_config import alertmanager_config, alertmanager_url
from deploys.ray_cluster import put_secret_files
from deploys.secret_files import sha256
from deploys.settings import Settings
from deploys.topology import Cluster, Node
from facts.secret_files import SecretFileState

ALERTMANAGER_VOLUME = "raydeploy-alertmanager-data"
CANDIDATE_CONFIG = f"{ALERTMANAGER_CANDIDATE_DIR}/alertmanager.yml"
# What amtool may quote of a config in its complaint: any URL (the webhook's is a secret) is hidden.
URL = r"[a-zA-Z][a-zA-Z0-9+.-]*://[^[:space:]\"']*"


def alertmanager_spec(settings: Settings, external_url: str) -> ContainerSpec:
    port = settings.alertmanager_port
    # Its config and secret files are not part of the spec: a changed config reloads Alertmanager.
    return ContainerSpec(
        name=ALERTMANAGER,
        component=ALERTMANAGER,
        image=settings.alertmanager_image,
        command=(
            f"--config.file={ALERTMANAGER_MOUNT}/alertmanager.yml",
            "--storage.path=/alertmanager",
            f"--web.listen-address=:{port}",
            # One Alertmanager: no gossip with peers, so its cluster port (9094) stays closed.
            "--cluster.listen-address=",
            # The links in its notices point here.
            f"--web.external-url={external_url}",
        ),
        restart=settings.container_restart_policy,
        volumes=(f"{ALERTMANAGER_DIR}:{ALERTMANAGER_MOUNT}:ro", f"{ALERTMANAGER_VOLUME}:/alertmanager"),
        health=HealthCheck(command=wget_command(port, "/-/ready"), interval="5s", start_period="30s"),
    )


def config_sources(settings: Settings) -> dict[str, list[str]]:
    """The alert_* settings that end up in alertmanager.yml as text, with that text (none of them secret)."""
    sources = {
        "alert_smtp_smarthost": [settings.alert_smtp_smarthost],
        "alert_smtp_from": [settings.alert_smtp_from],
        "alert_smtp_to": [settings.alert_smtp_to],
        "alert_smtp_username": [settings.alert_smtp_username],
        "alert_slack_channel": [settings.alert_slack_channel],
        "alert_group_by": list(settings.alert_group_by),
        "alert_group_wait": [settings.alert_group_wait],
        "alert_group_interval": [settings.alert_group_interval],
        "alert_repeat_interval": [settings.alert_repeat_interval],
    }
    return {name: [value for value in values if value] for name, values in sources.items()}


def check_config_command(settings: Settings, node_name: str) -> str:
    """amtool check-config on the candidate config, in a throwaway container of the Alertmanager image.

    On failure it prints amtool's complaint (URLs hidden), the settings whose values the complaint
    quotes, and exits 1; the command itself carries no secret, only paths.
    """
    amtool = (
        f"docker run --rm --network=none --user={int(settings.alertmanager_container_uid)} --entrypoint=amtool "
        f"--volume={ALERTMANAGER_CANDIDATE_DIR}:{ALERTMANAGER_MOUNT}:ro {shlex.quote(settings.alertmanager_image)} "
        f"check-config {ALERTMANAGER_MOUNT}/alertmanager.yml"
    )
    lines = [
        f"out=$({amtool} 2>&1) && exit 0",
        f"printf '%s\\n' \"$out\" | sed -E {shlex.quote(f's#{URL}#<a URL, hidden>#g')} >&2",
        'names=""',
    ]
    for name, values in config_sources(settings).items():
        for value in values:
            lines.append(f'case "$out" in *{shlex.quote(value)}*) names="$names {name}";; esac')
    every = "alert_* settings (README: Alerts)"
    failed = (
        f"{node_name}: Alertmanager's new config does not check (amtool check-config above); "
        "the running Alertmanager keeps its config. Fix the setting(s):"
    )
    lines.append(f'echo {shlex.quote(failed)} "${{names:-the {every}}}" >&2')
    lines.append("exit 1")
    return "\n".join(lines)


@operation()
def alertmanager_config_checked(settings: Settings, wanted_sha256: str):
    """
    Check the candidate config with amtool before it replaces the running one's; nothing when that is current.

    + settings: the monitoring host's settings (image, its user, the alert_* settings named on failure)
    + wanted_sha256: the sha256 of the new config, already written as the candidate

    **Example:**

    .. code:: python

        alertmanager_config_checked(name="Check Alertmanager's new config", settings=s, wanted_sha256=digest)
    """
    live = host.get_fact(SecretFileState, path=ALERTMANAGER_CONFIG)
    if live is not None and live["sha256"] == wanted_sha256:
        host.noop("Alertmanager's config is unchanged")
        return
    yield check_config_command(settings, host.name)


@operation()
def alertmanager_reloaded(container_name: str, port: int):
    """
    Load Alertmanager's new config through POST /-/reload, which answers once it is loaded (500: refused).

    + container_name: the Alertmanager container (it has wget)
    + port: Alertmanager's port
    """
    reload = (
        f"docker exec {shlex.quote(container_name)} wget -q -O - --post-data= http://127.0.0.1:{int(port)}/-/reload"
    )
    failed = (
        f"{host.name}: Alertmanager refused its new config and keeps the old one; see: docker logs {container_name}"
    )
    yield f"{reload} || {{ echo {shlex.quote(failed)} >&2; exit 1; }}"


def webhook_url(settings: Settings) -> str:
    """The generic webhook's URL from the state directory ('' when no severity routes to it)."""
    if "webhook" not in alert_receivers(settings):
        return ""
    url = alert_secret(settings, "webhook", lambda name: read_secret(settings.state_dir, name))
    if not re.match(r"^https?://[^\s]+$", url):
        # Never shown: it may carry a token.
        raise MissingAlertSecret(
            f"{settings.state_dir}/secrets/alert-webhook-url does not hold an http:// or https:// URL "
            "on one line; nothing was changed."
        )
    return url


def secret_files(node: Node, cluster: Cluster) -> tuple[SecretFile, SecretFile, list[SecretFile]]:
    """(the candidate config, the config, the receivers' secret files), every one 0600 for Alertmanager's user."""
    settings = node.settings
    try:
        text = alertmanager_config(cluster, webhook_url(settings))
        receivers = alert_secret_files(settings, lambda name: read_secret(settings.state_dir, name))
    except MissingAlertSecret as error:
        raise DeployError(f"{node.name}: {error}") from None
    uid = settings.alertmanager_container_uid
    candidate = SecretFile(f"{CANDIDATE_CONFIG} (checked before use)", CANDIDATE_CONFIG, text, uid)
    config = SecretFile(f"{ALERTMANAGER_CONFIG} (read by Alertmanager)", ALERTMANAGER_CONFIG, text, uid)
    return candidate, config, receivers


@deploy("Alertmanager")
def alertmanager(node: Node, cluster: Cluster) -> None:
    """Alertmanager with the config the alert_* settings make, checked first; reloaded when only it changed.

    + node: the monitoring host
    + cluster: the whole cluster
    """
    settings = node.settings
    candidate, config, receivers = secret_files(node, cluster)
    for directory in (ALERTMANAGER_DIR, ALERTMANAGER_CANDIDATE_DIR):
        files.directory(name=directory, path=directory, mode="755", user="root", group="root")
    put_secret_files([candidate])
    alertmanager_config_checked(
        name="Check Alertmanager's new config (amtool check-config)",
        settings=settings,
        wanted_sha256=sha256(config.content),
    )
    changed = put_secret_files([config])
    # Alertmanager reads its *_file secrets at each notice: a changed one needs no reload.
    put_secret_files(receivers)
    started = container(name="Alertmanager container", spec=alertmanager_spec(settings, alertmanager_url(cluster)))
    if started.will_change:
        http_ready(
            name="Alertmanager ready", container_name=ALERTMANAGER, port=settings.alertmanager_port, path="/-/ready"
        )
    elif any(op.will_change for op in changed):
        alertmanager_reloaded(
            name="Reload Alertmanager (config changed)", container_name=ALERTMANAGER, port=settings.alertmanager_port
        )
