"""A lab with several Ray versions: `lab up --ray-version V` adds V's image to an existing lab's mirror
and makes it the inventory's ray_image; growing the lab keeps its version; the mirror keeps every
version pullable; a version PyPI lacks changes nothing; a test can add a Ray image that does not start."""

from __future__ import annotations

import json
import time

import pytest

from bench.labs import Lab as BenchLab
from bench.upgrade import StopWatch
from raydeploy.lab.images import ray_mirror_ref
from raydeploy.lab.state import LAB_LABEL
from tests.lab.conftest import TestLab, broken_ray_ref

OLD, NEW = "2.59.0", "2.60.0"


@pytest.fixture(scope="module")
def versions(make_lab) -> TestLab:
    """A 1+1 lab made at Ray 2.59.0; the tests below grow it and switch its version in turn."""
    lab = make_lab("versions")
    lab.up("--workers", "1", "--ray-version", OLD)
    return lab


@pytest.fixture(scope="module")
def docker_on_worker(versions) -> TestLab:
    """worker-1 with Docker pointed at the lab's mirror, as the deploy's docker-installation leaves it."""
    state = versions.state()
    daemon = json.dumps({"registry-mirrors": [state.registry_mirror], "insecure-registries": [state.registry_address]})
    install = versions.host("worker-1").run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null"
        f" && echo '{daemon}' > /etc/docker/daemon.json && systemctl restart docker"
    )
    assert install.rc == 0, install.stderr
    return versions


def inventory_ray_images(lab: TestLab) -> set[str]:
    """The ray_image each host of the lab inventory has, as pyinfra reads it."""
    result = lab.pyinfra("--json", "inventories/lab.py", "debug-inventory")
    return {host["data"]["ray_image"] for host in json.loads(result.stdout)}


def ray_version_in(lab: TestLab, image: str):
    """`ray --version` in IMAGE, pulled through the mirror on worker-1."""
    host = lab.host("worker-1")
    pulled = host.run(f"docker pull {image}")
    assert pulled.rc == 0, f"{image}: {pulled.stdout}{pulled.stderr}"
    return host.run(f"docker run --rm {image} bash --login -c 'ray --version'")


def test_a_new_lab_runs_the_version_it_was_made_with(versions):
    state = versions.state()
    assert state.ray_version == OLD
    assert state.ray_images == {OLD: ray_mirror_ref(OLD)}
    assert inventory_ray_images(versions) == {ray_mirror_ref(OLD)}


def test_growing_the_lab_keeps_its_ray_version(versions):
    grown = versions.up("--workers", "2")
    assert f"Ray {OLD} (kept)" in grown.stderr
    assert "current Ray version" not in grown.stdout
    state = versions.state()
    assert [host.name for host in state.hosts] == ["head", "worker-1", "worker-2"]
    assert (state.ray_version, state.ray_images) == (OLD, {OLD: ray_mirror_ref(OLD)})
    assert inventory_ray_images(versions) == {ray_mirror_ref(OLD)}


def test_another_version_joins_the_mirror_and_becomes_the_inventory_ray_image(versions):
    switched = versions.up("--workers", "2", "--ray-version", NEW)
    assert f"current Ray version: {OLD} -> {NEW}" in switched.stdout, switched.stdout
    state = versions.state()
    assert state.ray_version == NEW
    assert state.ray_images == {OLD: ray_mirror_ref(OLD), NEW: ray_mirror_ref(NEW)}
    assert inventory_ray_images(versions) == {ray_mirror_ref(NEW)}
    described = json.loads(versions.raydeploy("lab", "status", "--json").stdout)
    assert described["ray_images"] == state.ray_images
    assert (described["ray_version"], described["ray_image"]) == (NEW, ray_mirror_ref(NEW))
    status = versions.raydeploy("lab", "status").stdout
    assert f"Ray in the mirror: {OLD}, {NEW}; current {NEW}: {ray_mirror_ref(NEW)}" in status, status


def test_every_version_of_the_lab_is_pullable_from_its_mirror(docker_on_worker):
    for version in (OLD, NEW):
        ran = ray_version_in(docker_on_worker, ray_mirror_ref(version))
        assert ran.rc == 0 and f"version {version}" in ran.stdout, f"{version}: {ran.stdout}{ran.stderr}"


@pytest.mark.parametrize(
    ("asked", "said"),
    [
        ("2.59.99", "PyPI has no Ray 2.59.99"),
        ("latest", "Ray version 'latest' is not a release number"),
    ],
)
def test_a_version_pypi_does_not_have_is_refused_by_name_and_nothing_changes(versions, asked, said):
    path = versions.home / versions.name / "state.json"
    before = path.read_text()
    refused = versions.up("--workers", "2", "--ray-version", asked, check=False)
    assert refused.returncode == 1
    assert said in refused.stderr and "nothing was changed" in refused.stderr, refused.stderr
    assert path.read_text() == before


def test_a_ray_image_that_does_not_start_can_be_put_in_the_mirror_and_made_current(
    docker_on_worker, broken_ray_image, engine
):
    lab = docker_on_worker
    reference = broken_ray_image(lab, make_current=True)
    assert reference == broken_ray_ref(NEW) == "rayproject/ray:2.60.0-py311-broken"
    state = lab.state()
    assert (state.ray_version, state.ray_image) == (f"{NEW}-broken", reference)
    assert inventory_ray_images(lab) == {reference}
    ran = ray_version_in(lab, reference)
    assert ran.rc != 0 and "No module named 'ray'" in ran.stderr, ran.stdout + ran.stderr
    local = engine.inspect("image", f"raydeploy-lab/{lab.name}-ray:{NEW}-py311-broken")
    assert local["Config"]["Labels"][LAB_LABEL] == lab.name

    # A grow keeps even this version; naming the release switches back to it.
    kept = lab.up("--workers", "2")
    assert lab.state().ray_image == reference, kept.stdout + kept.stderr
    back = lab.up("--workers", "2", "--ray-version", NEW)
    assert f"current Ray version: {NEW}-broken -> {NEW}" in back.stdout
    assert inventory_ray_images(lab) == {ray_mirror_ref(NEW)}
    assert set(lab.state().ray_images) == {OLD, NEW, f"{NEW}-broken"}


def test_the_upgrade_bench_sees_when_a_ray_container_stops_on_a_lab_host(docker_on_worker):
    """bench/upgrade.py starts a downtime at the first Ray container stop, streamed from each host's engine."""
    lab = docker_on_worker
    status = json.loads(lab.raydeploy("lab", "status", "--json").stdout)
    bench_lab = BenchLab(name=lab.name, env=lab.env, up_s=0.0, status=status)
    host = lab.host("worker-1")
    image = ray_mirror_ref(NEW)
    for name in ("ray-worker", "node-exporter"):
        host.check_output(f"docker run -d --name {name} {image} sleep 600")
    with StopWatch(bench_lab, ["ray-worker"], since=time.time(), hosts=["worker-1"]) as watch:
        host.check_output("docker stop --time 1 node-exporter")
        before = time.time()
        host.check_output("docker stop --time 1 ray-worker")  # sleep ignores SIGTERM: killed after 1 s
        after = time.time()
        time.sleep(1)
        stops = watch.stop()
    # ray-worker's kill, die and stop events; none of the other container's (stopped before `before`).
    assert len(stops) >= 2, stops
    assert before - 0.5 <= stops[0] <= stops[-1] <= after + 0.5, (before, stops, after)
    host.check_output("docker rm ray-worker node-exporter")


def test_lab_down_removes_the_images_the_test_made_for_the_lab(versions, engine):
    versions.down()
    assert versions.leftovers() == {"container": [], "volume": [], "network": []}
    assert engine.ids_with_label("image", f"{LAB_LABEL}={versions.name}") == []
    # The images `lab up` builds are every lab's and stay.
    assert engine.inspect("image", f"raydeploy-lab/ray:{OLD}-py311-cpu") is not None
