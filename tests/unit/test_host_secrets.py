"""Secrets reach containers only as mounted 0600 files: never in a container's environment, a command
line or an operation's name (no hosts needed: the specs and files are pure data)."""

from __future__ import annotations

import sys
import types

import pytest

from deploys.components import GRAFANA, PROMETHEUS, RAY_HEAD, RAY_REDIS, RAY_WORKER
from deploys.host_secrets import SecretFile, grafana_password_file, prometheus_token_file, redis_conf_text
from deploys.ray_cluster import WITH_REDIS_PASSWORD, ray_secret_files
from deploys.secret_files import secret_file_changes, sha256
from deploys.specs import container_specs
from facts.secret_files import file_state
from tests.clusters import make_cluster

CANARIES = {
    "ray-auth-token": "canary-ray-token-1f2e",
    "redis-password": "canary-redis-pass-3d4c",
    "grafana-admin-password": "canary-grafana-pass-5b6a",
}


def secret_of(name: str) -> str:
    return CANARIES[name]


def every_secret_file(cluster) -> list[SecretFile]:
    files = [file for node in cluster.nodes for file in ray_secret_files(node, secret_of).values() if file]
    monitor = cluster.monitoring[0].settings
    files.append(prometheus_token_file(cluster.head.settings, monitor, secret_of))
    files.append(grafana_password_file(monitor, secret_of))
    return files


def test_no_secret_is_in_any_containers_run_command_environment_or_health_check():
    cluster = make_cluster(workers=1)
    specs = container_specs(cluster.head, cluster, secret_of) | container_specs(cluster.workers[0], cluster, secret_of)
    assert set(specs) >= {RAY_HEAD, RAY_REDIS, RAY_WORKER, PROMETHEUS, GRAFANA}
    for name, spec in specs.items():
        # run_command() is `docker run` with every --env, the command, entrypoint and health check.
        for secret in CANARIES.values():
            assert secret not in spec.run_command(), f"{secret} in {name}'s docker run"
            assert secret not in repr(spec), f"{secret} in {name}'s spec"


def test_ray_containers_find_the_token_and_the_redis_password_in_mounted_files():
    cluster = make_cluster(workers=1)
    head = container_specs(cluster.head, cluster, secret_of)[RAY_HEAD]
    worker = container_specs(cluster.workers[0], cluster, secret_of)[RAY_WORKER]
    for spec in (head, worker):
        assert ("RAY_AUTH_TOKEN_PATH", "/run/raydeploy/ray-auth-token") in spec.env
        assert "RAY_AUTH_TOKEN" not in dict(spec.env)
        assert "/etc/raydeploy/ray-auth-token:/run/raydeploy/ray-auth-token:ro" in spec.volumes
        assert "--env-file" not in spec.run_command()
    assert "/etc/raydeploy/redis-password:/run/raydeploy/redis-password:ro" in head.volumes
    assert head.command[:4] == ("python3", "-c", WITH_REDIS_PASSWORD, "/run/raydeploy/redis-password")
    assert not any("redis-password" in arg or "REDIS_PASSWORD" in arg for arg in head.command[4:])


def test_the_head_start_adds_the_redis_password_from_its_file_to_rays_own_arguments(tmp_path, monkeypatch):
    cluster = make_cluster(workers=0)
    head = container_specs(cluster.head, cluster, secret_of)[RAY_HEAD]
    password_file = tmp_path / "redis-password"
    password_file.write_text(CANARIES["redis-password"])
    seen = {}
    scripts = types.ModuleType("ray.scripts.scripts")
    scripts.main = lambda: seen.setdefault("argv", list(sys.argv)) and 0
    for module in ("ray", "ray.scripts"):
        monkeypatch.setitem(sys.modules, module, types.ModuleType(module))
    monkeypatch.setitem(sys.modules, "ray.scripts.scripts", scripts)
    monkeypatch.setattr(sys, "argv", ["-c", str(password_file), *head.command[4:]])
    with pytest.raises(SystemExit):
        exec(head.command[2], {"__name__": "__main__"})
    assert seen["argv"] == ["ray", *head.command[4:], f"--redis-password={CANARIES['redis-password']}"]
    assert seen["argv"][1:3] == ["start", "--head"]


def test_a_changed_secret_recreates_the_containers_that_read_it():
    cluster = make_cluster(workers=1)
    before = container_specs(cluster.head, cluster, secret_of)
    changed = {**CANARIES, "redis-password": "another"}
    after = container_specs(cluster.head, cluster, changed.__getitem__)
    assert before[RAY_REDIS].digest() != after[RAY_REDIS].digest()
    assert before[RAY_HEAD].digest() != after[RAY_HEAD].digest()
    assert before[PROMETHEUS].digest() == after[PROMETHEUS].digest()


def test_every_secret_file_holds_its_secret_under_a_name_that_does_not():
    cluster = make_cluster(workers=1)
    files = every_secret_file(cluster)
    assert {file.path for file in files} == {
        "/etc/raydeploy/ray-auth-token",
        "/etc/raydeploy/redis-password",
        "/etc/raydeploy/redis.conf",
        "/etc/raydeploy/prometheus/ray-auth-token",
        "/etc/raydeploy/grafana-admin-password",
    }
    for file in files:
        assert any(secret in file.content for secret in CANARIES.values()), file.path
        for secret in CANARIES.values():
            assert secret not in file.name and secret not in file.path


def test_each_secret_file_is_owned_by_the_user_of_the_container_that_reads_it():
    uids = {"ray_container_uid": 0, "redis_container_uid": 100, "prometheus_container_uid": 65534}
    cluster = make_cluster(workers=1, grafana_container_uid=472, **uids)
    owners = {file.path: file.owner for file in every_secret_file(cluster)}
    assert owners == {
        "/etc/raydeploy/ray-auth-token": 0,
        "/etc/raydeploy/redis-password": 0,
        "/etc/raydeploy/redis.conf": 100,
        "/etc/raydeploy/prometheus/ray-auth-token": 65534,
        "/etc/raydeploy/grafana-admin-password": 472,
    }
    defaults = {file.path: file.owner for file in every_secret_file(make_cluster(workers=1))}
    assert defaults["/etc/raydeploy/ray-auth-token"] == 1000  # the official images' users
    assert defaults["/etc/raydeploy/redis.conf"] == 999


def test_no_secret_files_without_token_auth_or_redis():
    cluster = make_cluster(workers=1, ray_auth_mode="disabled", redis_enabled=False)
    assert [file for node in cluster.nodes for file in ray_secret_files(node, secret_of).values() if file] == []
    head = container_specs(cluster.head, cluster, secret_of)[RAY_HEAD]
    assert head.command[:3] == ("ray", "start", "--head") and head.volumes == ("/tmp/ray:/tmp/ray",)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(None, (True, True), id="absent: upload"),
        pytest.param({"mode": "600", "uid": 999, "gid": 0, "sha256": "old"}, (True, True), id="other content"),
        pytest.param({"mode": "644", "uid": 999, "gid": 0, "sha256": "wanted"}, (False, True), id="0644 as before"),
        pytest.param({"mode": "640", "uid": 0, "gid": 65534, "sha256": "wanted"}, (False, True), id="0640 group"),
        pytest.param({"mode": "600", "uid": 0, "gid": 0, "sha256": "wanted"}, (False, True), id="owner root"),
        pytest.param({"mode": "600", "uid": 999, "gid": 0, "sha256": "wanted"}, (False, False), id="settled"),
    ],
)
def test_a_secret_file_is_uploaded_when_its_content_differs_and_fixed_when_its_mode_or_owner_does(found, expected):
    assert secret_file_changes(found, "wanted", owner=999) == expected


def test_the_secret_file_fact_reads_stat_and_sha256sum():
    digest = sha256("x")
    assert file_state(["600 999 0", f"{digest}  /etc/raydeploy/redis.conf"]) == {
        "mode": "600",
        "uid": 999,
        "gid": 0,
        "sha256": digest,
    }
    assert file_state([]) is None


def test_each_secret_files_operation_is_named_by_the_reader_it_is_for():
    names = {file.path: file.name for file in every_secret_file(make_cluster(workers=1))}
    assert names == {
        "/etc/raydeploy/ray-auth-token": "/etc/raydeploy/ray-auth-token (read by Ray)",
        "/etc/raydeploy/redis-password": "/etc/raydeploy/redis-password (read by the Ray head)",
        "/etc/raydeploy/redis.conf": "/etc/raydeploy/redis.conf (read by Redis)",
        "/etc/raydeploy/prometheus/ray-auth-token": "/etc/raydeploy/prometheus/ray-auth-token (read by Prometheus)",
        "/etc/raydeploy/grafana-admin-password": "/etc/raydeploy/grafana-admin-password (read by Grafana)",
    }


def test_redis_listens_on_loopback_only_behind_its_password_and_keeps_an_append_only_file():
    settings = make_cluster(workers=1, redis_port=6390).head.settings
    assert redis_conf_text(settings, "pw") == (
        "port 6390\nbind 127.0.0.1\nprotected-mode yes\nrequirepass pw\nappendonly yes\nappendfsync everysec\ndir /data\n"
    )


def test_prometheus_gets_the_token_when_the_head_asks_for_one_whatever_the_monitors_own_setting():
    cluster = make_cluster(workers=1)
    head, monitor = cluster.head.settings, cluster.monitoring[0].settings
    off = monitor.model_copy(update={"ray_auth_mode": "disabled"})
    assert prometheus_token_file(head, off, secret_of).content == CANARIES["ray-auth-token"]
    assert prometheus_token_file(head.model_copy(update={"ray_auth_mode": "disabled"}), monitor, secret_of) is None
