"""destroy's decisions: what goes and what stays on a host, from the host's facts."""

from __future__ import annotations

from deploys.teardown import CONFIG_ENTRIES, DATA_VOLUMES, is_true, teardown_of

OURS = {"labels": {"raydeploy.component": "ray-head", "raydeploy.spec": "abc"}}
THEIRS = {"labels": {"com.example": "x"}}
CONFIG = ["prometheus", "ray-auth-token", "redis-password", "redis.conf"]
VOLUMES = ["raydeploy-prometheus-data", "raydeploy-redis-data", "someone-elses"]


def test_only_containers_carrying_the_component_label_are_removed_and_the_others_are_named_as_kept():
    teardown = teardown_of({"ray-head": OURS, "redis": OURS, "ray_head": THEIRS, "db": {"labels": {}}}, [], [], False)
    assert teardown.containers == ("ray-head", "redis")
    assert "destroy keeps containers raydeploy did not make: db, ray_head" in teardown.notes()


def test_data_volumes_stay_without_purge_data_and_are_said_to_stay():
    teardown = teardown_of({}, VOLUMES, [], purge_data=False)
    assert teardown.volumes == ()
    assert any("raydeploy-redis-data" in line and "--purge-data" in line for line in teardown.notes())


def test_purge_data_removes_only_raydeploys_volumes_by_name():
    teardown = teardown_of({}, VOLUMES, [], purge_data=True)
    assert teardown.volumes == ("raydeploy-redis-data", "raydeploy-prometheus-data")
    assert set(DATA_VOLUMES) >= set(teardown.volumes)


def test_raydeploys_files_go_and_the_directory_with_them_when_nothing_else_is_there():
    teardown = teardown_of({}, [], CONFIG, False)
    assert teardown.config_paths == (
        "/etc/raydeploy/ray-auth-token",
        "/etc/raydeploy/redis-password",
        "/etc/raydeploy/redis.conf",
        "/etc/raydeploy/prometheus",
    )
    assert teardown.config_dir_removed


def test_a_file_raydeploy_did_not_write_keeps_itself_and_the_directory():
    teardown = teardown_of({}, [], [*CONFIG, "my-notes.txt"], False)
    assert "/etc/raydeploy/my-notes.txt" not in teardown.config_paths
    assert len(teardown.config_paths) == 4
    assert not teardown.config_dir_removed
    assert any("my-notes.txt" in line for line in teardown.notes())


def test_a_host_already_torn_down_plans_nothing():
    teardown = teardown_of({"db": THEIRS}, ["someone-elses"], [], purge_data=True)
    assert teardown.empty
    assert teardown.notes()[0] == "destroy: nothing of raydeploy's is left on this host"


def test_every_file_a_deploy_writes_under_etc_raydeploy_is_known_to_destroy():
    from deploys import host_secrets, monitoring

    written = [
        host_secrets.RAY_TOKEN,
        host_secrets.REDIS_PASSWORD,
        host_secrets.REDIS_CONF,
        host_secrets.PROMETHEUS_TOKEN_ON_HOST,
        host_secrets.GRAFANA_PASSWORD,
        *host_secrets.OLD_RAY_ENV_FILES,
        host_secrets.OLD_GRAFANA_ENV_FILE,
        monitoring.PROMETHEUS_DIR,
        monitoring.GRAFANA_DIR,
    ]
    top = {path.removeprefix(host_secrets.CONFIG_DIR + "/").split("/")[0] for path in written}
    assert top <= set(CONFIG_ENTRIES)


def test_data_given_on_a_command_line_is_read_as_a_flag():
    assert is_true("true") and is_true("1") and is_true(True)
    assert not is_true("false") and not is_true(False) and not is_true("")
