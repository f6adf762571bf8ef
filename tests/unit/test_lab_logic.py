"""The lab's pure logic and its refusals, without a Docker engine."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict

import pytest

from raydeploy.lab import images as lab_images
from raydeploy.lab import state as lab_state
from raydeploy.lab.engine import Engine, NoEngineError
from raydeploy.lab.images import ImageBuilder, UnknownRayVersionError, check_ray_release, recipes
from raydeploy.lab.lifecycle import (
    Lab,
    LabError,
    UpReport,
    choose_ray,
    describe,
    host_names,
    published_ports,
    validate_workers,
)
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
    assert published_ports("head") == [22, 8265, 9090, 3000, 9093]


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
        "alertmanager": "prom/alertmanager:v0.25.0",
    }


def test_a_lab_without_its_ray_image_builds_none():
    assert "ray" not in {recipe.key for recipe in recipes(None)}
    assert {recipe.key for recipe in recipes(None)} == {recipe.key for recipe in recipes("2.60.0")} - {"ray"}


def test_a_state_file_from_before_several_versions_loads_with_its_one_version(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_LAB_HOME", str(tmp_path))
    old = asdict(make_state("old"))
    del old["ray_images"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "state.json").write_text(json.dumps(old))
    loaded = lab_state.load("old")
    assert loaded.ray_images == {"2.60.0": "rayproject/ray:2.60.0-py311-cpu"}
    assert loaded.ray_image == "rayproject/ray:2.60.0-py311-cpu"


def test_the_state_keeps_every_version_and_the_current_one_gives_the_ray_image(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_LAB_HOME", str(tmp_path))
    state = make_state()
    state.ray_images = {"2.59.0": "rayproject/ray:2.59.0-py311-cpu", "2.60.0": "rayproject/ray:2.60.0-py311-cpu"}
    state.ray_version = "2.59.0"
    lab_state.save(state)
    loaded = lab_state.load("unit")
    assert loaded.ray_images == state.ray_images
    assert loaded.ray_image == "rayproject/ray:2.59.0-py311-cpu"


def test_a_new_lab_runs_the_asked_version_or_the_default():
    assert choose_ray(None, None).version == "2.60.0"
    fresh = choose_ray(None, "2.59.0")
    assert (fresh.version, fresh.mirror_ref, fresh.from_pypi) == ("2.59.0", "rayproject/ray:2.59.0-py311-cpu", True)


def test_lab_up_without_a_version_keeps_the_current_one():
    state = make_state()
    state.ray_images = {"2.59.0": "rayproject/ray:2.59.0-py311-cpu", "2.60.0": "rayproject/ray:2.60.0-py311-cpu"}
    state.ray_version = "2.59.0"
    assert choose_ray(state, None).version == "2.59.0"
    assert choose_ray(state, "2.60.0").version == "2.60.0"


def test_a_pushed_image_recorded_as_a_version_is_switched_to_without_building():
    state = make_state()
    state.ray_images["2.60.0-broken"] = "rayproject/ray:2.60.0-py311-broken"
    state.ray_version = "2.60.0-broken"
    kept = choose_ray(state, None)
    assert (kept.version, kept.mirror_ref, kept.from_pypi) == (
        "2.60.0-broken",
        "rayproject/ray:2.60.0-py311-broken",
        False,
    )
    assert choose_ray(state, "2.60.0").from_pypi


@pytest.mark.parametrize("text", ["latest", "2.60", "2.60.0; rm -rf /", "v2.60.0", "2.60.0-broken", ""])
def test_a_ray_version_not_written_as_a_release_is_refused_by_name(text):
    with pytest.raises(UnknownRayVersionError, match=r"is not a release number like 2\.60\.0; nothing was changed"):
        check_ray_release(text)
    for release in ("2.60.0", "2.9.0rc1", "3.0.0.dev0"):
        check_ray_release(release)


def test_a_version_pypi_does_not_have_is_named_and_leaves_no_download_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_CACHE_DIR", str(tmp_path))
    pip_said = (
        "ERROR: Could not find a version that satisfies the requirement ray[default]==2.99.0\n"
        "ERROR: No matching distribution found for ray[default]==2.99.0\n"
    )
    monkeypatch.setattr(
        lab_images.subprocess,
        "run",
        lambda command, **_: subprocess.CompletedProcess(command, 1, stdout="", stderr=pip_said),
    )
    with pytest.raises(UnknownRayVersionError, match=r"PyPI has no Ray 2\.99\.0 .*nothing was changed"):
        ImageBuilder(Engine(), progress=lambda message: None).ray_wheels("2.99.0")
    assert not (tmp_path / "wheels" / "ray-2.99.0").exists()


def test_lab_up_says_when_the_current_ray_version_changes():
    report = UpReport(ray_switched=("2.59.0", "2.60.0"))
    assert report.changed
    assert describe(report) == ["current Ray version: 2.59.0 -> 2.60.0 (the lab inventory's ray_image follows)"]


def test_an_image_of_its_own_is_not_recorded_under_a_release_number(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDEPLOY_LAB_HOME", str(tmp_path))
    lab_state.save(make_state())
    lab = Lab("unit", engine=Engine(binary="/nonexistent/docker"), progress=lambda message: None)
    with pytest.raises(LabError, match=r"record rayproject/ray:2\.60\.0-py311-broken under a name of its own"):
        lab.push_image("raydeploy-lab/unit-ray:broken", "rayproject/ray:2.60.0-py311-broken", ray_version="2.60.0")
    assert lab_state.load("unit") == make_state()
