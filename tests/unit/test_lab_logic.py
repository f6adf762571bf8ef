"""The lab's pure logic and its refusals, without a Docker engine."""

from __future__ import annotations

import pytest

from raydeploy.lab import state as lab_state
from raydeploy.lab.engine import Engine, NoEngineError
from raydeploy.lab.images import recipes
from raydeploy.lab.lifecycle import LabError, host_names, published_ports, validate_workers
from raydeploy.lab.state import LabHost, LabState


def make_state(name: str = "unit") -> LabState:
    return LabState(
        name=name,
        ray_version="2.60.0",
        network=f"{name}-net",
        subnet="10.213.7.0/24",
        registry_container=f"{name}-registry",
        registry_address="10.213.7.2:5000",
        registry_published_port=40000,
        ssh_user="root",
        ssh_key="/keys/id_ed25519",
        known_hosts="/keys/known_hosts",
        ssh_config="/keys/ssh_config",
        images={"ray": "rayproject/ray:2.60.0-py311-cpu"},
        hosts=[
            LabHost("head", "head", f"{name}-head", "10.213.7.10", 40001, {"ray-dashboard": 40002}),
            LabHost("worker-1", "worker", f"{name}-worker-1", "10.213.7.11", 40003),
        ],
    )


def test_worker_count_outside_one_to_eight_is_refused_with_the_range():
    for bad in (0, 9, -1):
        with pytest.raises(LabError, match="1 to 8 workers"):
            validate_workers(bad)
    validate_workers(1)
    validate_workers(8)


def test_a_lab_is_one_head_and_numbered_workers():
    assert host_names(3) == [("head", "head"), ("worker-1", "worker"), ("worker-2", "worker"), ("worker-3", "worker")]


def test_only_the_head_publishes_the_service_ports():
    assert published_ports("worker") == [22]
    assert published_ports("head") == [22, 8265, 9090, 3000]


def test_state_file_round_trips_and_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_LAB_HOME", str(tmp_path))
    state = make_state()
    path = lab_state.save(state)
    assert path == tmp_path / "unit" / "state.json"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = lab_state.load("unit")
    assert loaded == state
    assert loaded.head.cluster_address == "10.213.7.10"
    assert [worker.name for worker in loaded.workers] == ["worker-1"]
    assert loaded.registry_mirror == "http://10.213.7.2:5000"
    assert loaded.service_urls() == {"ray-dashboard": "http://127.0.0.1:40002"}


def test_missing_lab_says_to_run_lab_up(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_LAB_HOME", str(tmp_path))
    with pytest.raises(lab_state.NoLabError, match="run `raydeploy lab up`"):
        lab_state.load("absent")


def test_corrupt_state_file_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_LAB_HOME", str(tmp_path))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{not json")
    with pytest.raises(lab_state.NoLabError, match=r"unreadable.*raydeploy lab up --name broken"):
        lab_state.load("broken")


def test_unknown_host_lists_the_hosts_there_are():
    with pytest.raises(KeyError, match="head, worker-1"):
        make_state().host("worker-7")


def test_missing_docker_binary_says_how_to_get_an_engine():
    with pytest.raises(NoEngineError, match=r"apt-get install -y docker\.io"):
        Engine(binary="/nonexistent/docker").ping()


def test_every_mirrored_image_has_an_upstream_name_and_tag():
    mirrored = {recipe.key: recipe.mirror_ref for recipe in recipes("2.60.0") if recipe.mirror_ref}
    assert mirrored == {
        "ray": "rayproject/ray:2.60.0-py311-cpu",
        "prometheus": "prom/prometheus:v2.42.0",
        "node-exporter": "prom/node-exporter:v1.5.0",
        "redis": "redis:7.0",
    }
