"""Settings: defaults, coercion, and refusals that name the host, the key, the value and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploys.settings import Settings, SettingsError, check_cluster, markdown_table, settings_from_data

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_fill_what_the_data_leaves_out():
    settings = settings_from_data("node-1", {}, ssh_hostname="10.0.0.5")
    assert settings.cluster_address == "10.0.0.5"
    assert settings.docker_source == "docker-ce"
    assert settings.ray_gcs_port == 6379 and settings.ray_dashboard_port == 8265
    assert settings.ray_auth_mode == "token"
    assert settings.redis_enabled is True


def test_numbers_given_as_strings_are_accepted():
    settings = settings_from_data("node-1", {"ray_num_cpus": "16", "ray_dashboard_port": "9265"})
    assert settings.ray_num_cpus == 16 and settings.ray_dashboard_port == 9265


def test_every_bad_key_of_a_host_is_reported_at_once():
    with pytest.raises(SettingsError) as error:
        settings_from_data(
            "G-241",
            {"ray_num_cpus": "sixteen", "docker_source": "snap", "ray_gcs_port": 70000, "docker_live_restore": "yes"},
        )
    lines = str(error.value).splitlines()
    assert "G-241: ray_num_cpus='sixteen' must be a whole number >= 0" in lines
    assert "G-241: docker_source='snap' must be one of: docker-ce, distro" in lines
    assert "G-241: ray_gcs_port=70000 must be a port number, 1 to 65535" in lines
    assert "G-241: docker_live_restore='yes' must be true or false" in lines


def test_sizes_and_mappings_are_checked():
    with pytest.raises(SettingsError, match=r"ray_shm_size='lots' must be a size like 512m or 2g"):
        settings_from_data("h", {"ray_shm_size": "lots"})
    with pytest.raises(SettingsError, match=r"ray_resources=.* must map names to float values"):
        settings_from_data("h", {"ray_resources": {"gpu_slots": "many"}})
    assert settings_from_data("h", {"ray_resources": {"accelerator": 2}}).ray_resources == {"accelerator": 2.0}


def node(name: str, role: str, **data) -> tuple[str, str, Settings]:
    return name, role, settings_from_data(name, data, ssh_hostname=data.pop("address", None) or f"10.0.0.{len(name)}")


def test_a_cluster_needs_exactly_one_head():
    with pytest.raises(SettingsError, match=r"exactly one host; found 2 \(a, b\)"):
        check_cluster([node("a", "head", cluster_address="10.0.0.1"), node("b", "head", cluster_address="10.0.0.2")])
    with pytest.raises(SettingsError, match=r"found 0 \(none\)"):
        check_cluster([node("w", "worker", cluster_address="10.0.0.3")])


def test_mixed_ray_images_are_refused_naming_each_node():
    with pytest.raises(
        SettingsError,
        match=r"ray_image differs across nodes \(h=rayproject/ray:2.60.0-py311-cpu, w=rayproject/ray:2.9.0\)",
    ):
        check_cluster(
            [
                node("h", "head", cluster_address="10.0.0.1"),
                node("w", "worker", cluster_address="10.0.0.2", ray_image="rayproject/ray:2.9.0"),
            ]
        )


def test_a_port_used_twice_on_one_host_is_refused():
    with pytest.raises(SettingsError, match=r"h: redis_port=6379 clashes with ray_gcs_port=6379"):
        check_cluster([node("h", "head", cluster_address="10.0.0.1", redis_port=6379)])


def test_two_nodes_with_one_cluster_address_are_refused():
    with pytest.raises(SettingsError, match=r"w: cluster_address='10.0.0.1' is also h's"):
        check_cluster([node("h", "head", cluster_address="10.0.0.1"), node("w", "worker", cluster_address="10.0.0.1")])


def test_readme_configuration_table_is_the_one_the_settings_make():
    readme = README.read_text()
    assert markdown_table() in readme, "README's settings table is stale: paste `python -m deploys.settings`"
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented >= set(Settings.__dataclass_fields__)
