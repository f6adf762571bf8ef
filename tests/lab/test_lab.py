"""`raydeploy lab`: real Debian hosts with systemd and sshd, a mirror, idempotent up, clean down."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import pytest

from raydeploy.lab import lifecycle
from raydeploy.lab.engine import Engine
from raydeploy.lab.images import REGISTRY_IMAGE, ImageBuilder, ImageBuildError, Recipe
from raydeploy.lab.lifecycle import Lab

HOSTS = ["head", "worker-1", "worker-2"]


@pytest.mark.parametrize("name", HOSTS)
def test_host_runs_systemd_and_sshd_without_docker(lab, name):
    host = lab.host(name)
    assert host.check_output("hostname") == name
    assert host.run("systemctl is-system-running").stdout.strip() == "running"
    assert host.service("ssh").is_running
    assert host.service("ssh").is_enabled
    assert host.user().name == "root"
    assert host.exists("python3") and host.exists("sudo")
    assert not host.exists("docker") and not host.exists("dockerd")
    assert not host.package("docker.io").is_installed
    assert host.mount_point("/var/lib/docker").exists


def test_cluster_addresses_reach_each_other(lab):
    state = lab.state()
    addresses = [host.cluster_address for host in state.hosts]
    assert len(set(addresses)) == 3
    for lab_host in state.hosts:
        host = lab.host(lab_host.name)
        assert lab_host.cluster_address in host.check_output("hostname -I").split()
        for address in addresses:
            ping = host.run(f"ping -c 1 -W 2 {address}")
            assert ping.rc == 0, f"{lab_host.name} cannot reach {address}: {ping.stdout}{ping.stderr}"


def test_status_json_names_hosts_roles_addresses_ports_and_urls(lab):
    described = json.loads(lab.raydeploy("lab", "status", "--json").stdout)
    assert [(host["name"], host["role"]) for host in described["hosts"]] == [
        ("head", "head"),
        ("worker-1", "worker"),
        ("worker-2", "worker"),
    ]
    assert all(host["status"] == "running" for host in described["hosts"])
    assert all(host["ssh"].startswith("127.0.0.1:") for host in described["hosts"])
    assert set(described["urls"]) == {"ray-dashboard", "prometheus", "grafana", "alertmanager"}
    assert all(url.startswith("http://127.0.0.1:") for url in described["urls"].values())
    assert described["registry"]["status"] == "running"


def test_ports_are_published_on_loopback_only(lab, engine):
    for lab_host in lab.state().hosts:
        found = engine.inspect("container", lab_host.container)
        bindings = [binding for port in found["NetworkSettings"]["Ports"].values() for binding in port or []]
        assert bindings, lab_host.name
        assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}


def test_lab_ssh_runs_a_command_on_a_host(lab):
    result = lab.raydeploy("lab", "ssh", "worker-1", "--", "hostname")
    assert result.stdout.strip() == "worker-1"
    unknown = lab.raydeploy("lab", "ssh", "worker-9", "--", "true", check=False)
    assert unknown.returncode == 1 and "head, worker-1, worker-2" in unknown.stderr


def test_pyinfra_reaches_every_host_through_the_lab_inventory(lab):
    result = lab.pyinfra("inventories/lab.py", "exec", "--", "hostname")
    output = result.stdout + result.stderr  # pyinfra reports on stderr
    for name in HOSTS:
        assert re.search(rf"\[{name}\]\s+{name}\n", output), output
    assert re.search(r"Grand total\s+3\s+3\s+-\s+-", output), output
    inventory = lab.pyinfra("inventories/lab.py", "debug-inventory")
    groups = inventory.stdout + inventory.stderr
    assert re.search(r"\[head\]\s+--> Groups: head\b", groups), groups
    for worker in ("worker-1", "worker-2"):
        assert re.search(rf"\[{worker}\]\s+--> Groups: workers\b", groups), groups


def test_second_lab_up_changes_nothing_and_says_so(lab, engine):
    def snapshot():
        return {
            host.container: (found["Id"], found["State"]["StartedAt"])
            for host in lab.state().hosts
            for found in [engine.inspect("container", host.container)]
        }

    before = snapshot()
    result = lab.up("--workers", "2")
    assert "nothing changed" in result.stdout
    assert snapshot() == before


def test_a_host_with_the_mirror_pulls_the_lab_images(make_lab):
    """Install docker.io in a host, point it at the mirror, and pull images under upstream names."""
    mirror_lab = make_lab("mirror")
    mirror_lab.up("--workers", "1")
    state = mirror_lab.state()
    host = mirror_lab.host("worker-1")
    daemon = json.dumps({"registry-mirrors": [state.registry_mirror], "insecure-registries": [state.registry_address]})
    install = host.run(
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null"
        f" && echo '{daemon}' > /etc/docker/daemon.json && systemctl restart docker"
    )
    assert install.rc == 0, install.stderr
    for image in state.images.values():
        pulled = host.run(f"docker pull {image}")
        assert pulled.rc == 0, f"{image}: {pulled.stdout}{pulled.stderr}"
    assert "Redis server v=7.0." in host.check_output("docker run --rm redis:7.0 redis-server --version")
    ray_image = state.images["ray"]
    assert "2.60.0" in host.check_output(f"docker run --rm {ray_image} bash --login -c 'ray --version'")
    mirror_lab.down()  # its hosts would load the machine for the rest of the session


def test_lab_scales_up_by_adding_only_the_new_worker_and_down_removes_everything(make_lab, lab, engine):
    scaled = make_lab("scale")
    scaled.up("--workers", "1")
    first_head = engine.inspect("container", f"{scaled.name}-head")["Id"]
    grown = scaled.up("--workers", "2")
    assert f"created: {scaled.name}-worker-2" in grown.stdout
    assert engine.inspect("container", f"{scaled.name}-head")["Id"] == first_head
    shrunk = scaled.up("--workers", "1")
    assert f"removed: {scaled.name}-worker-2" in shrunk.stdout

    before = scaled.leftovers()
    assert all(before.values()), before
    result = scaled.down()
    assert "removed" in result.stdout
    assert scaled.leftovers() == {"container": [], "volume": [], "network": []}
    assert not (scaled.home / scaled.name).exists()
    assert scaled.raydeploy("lab", "down").stdout.strip().endswith("nothing to remove.")
    # The other lab on the machine is untouched.
    assert all(lab.leftovers().values())


def test_a_name_taken_by_a_foreign_container_stops_lab_up_before_any_change(make_lab, engine):
    clash = make_lab("clash")
    foreign = f"{clash.name}-head"
    engine.run(["create", "--name", foreign, "--label", "raydeploy.test=foreign", "raydeploy-lab/host:bookworm"])
    try:
        result = clash.up("--workers", "1", check=False)
        assert result.returncode == 1
        assert f"A container named '{foreign}' already exists and is not part of lab" in result.stderr
        assert clash.leftovers() == {"container": [], "volume": [], "network": []}
    finally:
        engine.run(["rm", "--force", foreign])


def test_a_loopback_port_taken_between_choice_and_run_is_chosen_again(make_lab, engine, monkeypatch):
    # Two labs starting at the same moment (the suite's two workers) can pick the same free port;
    # the one whose `docker run` comes second finds it allocated. CI lost a whole test file to this.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    choices = iter([[f"--publish=127.0.0.1:{port}:5000"]])
    real_choice = lifecycle.loopback_publishes
    monkeypatch.setattr(lifecycle, "loopback_publishes", lambda ports: next(choices, None) or real_choice(ports))
    messages: list[str] = []
    lab = Lab(make_lab("portclash").name, engine, progress=messages.append)
    container = lab.container_name("registry")
    try:
        lab._run_publishing(container, [f"--label={lab.label}"], [5000], REGISTRY_IMAGE)
        assert lab._container_status(container) == "running"
        assert lab._published_port(container, 5000) != port
        assert messages == [f"  {container}: a loopback port was taken meanwhile; trying other ports"]
    finally:
        taken.close()
        engine.run(["rm", "--force", container], check=False)


def test_one_container_never_gets_the_same_loopback_port_twice():
    flags = lifecycle.loopback_publishes([22, 8265, 9090, 3000] * 8)
    chosen = [flag.split(":")[1] for flag in flags]
    assert len(set(chosen)) == len(chosen)


def test_a_failing_image_build_shows_the_failing_step(engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nRUN echo preparing\nRUN echo the-step-that-breaks && exit 3\n"
    )
    recipe = Recipe("broken", "raydeploy-test/broken:1", recipe_dir=tmp_path)
    builder = ImageBuilder(Engine(), progress=lambda message: None)
    with pytest.raises(ImageBuildError) as failure:
        builder.ensure(recipe, builder.ensure_base())
    message = str(failure.value)
    assert "Building raydeploy-test/broken:1 failed at this step" in message
    assert "the-step-that-breaks" in message
    assert "preparing" not in message.split("failed at this step")[1]
    assert subprocess.run(["docker", "image", "inspect", "raydeploy-test/broken:1"], capture_output=True).returncode
    # The failed step's container is not left behind.
    stopped = subprocess.run(
        ["docker", "ps", "--all", "--no-trunc", "--filter", "status=exited", "--format", "{{.Command}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "the-step-that-breaks" not in stopped
