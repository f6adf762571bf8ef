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


def test_numbers_are_whole_numbers_not_flags_fractions_or_other_digits():
    with pytest.raises(SettingsError) as error:
        settings_from_data(
            "h",
            {
                "ray_num_cpus": True,
                "min_cpus": 2.5,
                "ray_num_gpus": "\u0663",
                "redis_port": "+6380",
                "min_shm_mb": "-1",
            },
        )
    lines = str(error.value).splitlines()
    assert "h: ray_num_cpus=True must be a whole number >= 0" in lines
    assert "h: min_cpus=2.5 must be a whole number >= 1" in lines
    assert "h: ray_num_gpus='\u0663' must be a whole number >= 0" in lines
    assert "h: redis_port='+6380' must be a whole number" in lines
    assert "h: min_shm_mb='-1' must be a whole number >= 1" in lines
    assert settings_from_data("h", {"min_cpus": " 4 "}).min_cpus == 4


def test_a_number_under_its_minimum_says_the_minimum():
    with pytest.raises(SettingsError) as error:
        settings_from_data("h", {"ray_object_store_memory_mb": 10, "ray_join_timeout_s": "5", "redis_port": 0})
    assert str(error.value).splitlines() == [
        "h: ray_object_store_memory_mb=10 must be >= 64",
        "h: ray_join_timeout_s='5' must be >= 10",
        "h: redis_port=0 must be a port number, 1 to 65535",
    ]


def test_a_huge_or_odd_value_is_refused_in_words_and_shown_shortened():
    with pytest.raises(SettingsError) as error:
        settings_from_data("h", {"ray_gcs_port": "9" * 5000, "min_memory_mb": "\u00b2"})
    second, first = str(error.value).splitlines()  # in the order the settings are listed
    assert first.startswith("h: ray_gcs_port='999") and first.endswith("... must be a whole number")
    assert len(first) < 140
    assert second == "h: min_memory_mb='\u00b2' must be a whole number >= 256"


def test_none_keeps_the_default_and_keys_that_are_not_settings_are_ignored():
    settings = settings_from_data(
        "h", {"docker_source": None, "ray_num_cpus": None, "ssh_hostname": "10.0.0.9", "ssh_user": "root"}
    )
    assert settings.docker_source == "docker-ce" and settings.ray_num_cpus is None
    assert not hasattr(settings, "ssh_user")


def test_lists_and_mappings_keep_their_shape():
    settings = settings_from_data(
        "h", {"docker_users": ("ray", "ops"), "ray_extra_env": {"RAY_DEDUP_LOGS": 0, "RAY_X": "y"}}
    )
    assert settings.docker_users == ["ray", "ops"]
    assert settings.ray_extra_env == {"RAY_DEDUP_LOGS": "0", "RAY_X": "y"}
    with pytest.raises(SettingsError) as error:
        settings_from_data(
            "h",
            {
                "docker_registry_mirrors": {"http://mirror:5000"},
                "ray_extra_env": {"A": None, "B": [1]},
                "ray_resources": {"slots": float("nan")},
                "docker_users": "ray",
            },
        )
    assert str(error.value).splitlines() == [
        "h: docker_registry_mirrors={'http://mirror:5000'} must be a list of strings",
        "h: docker_users='ray' must be a list of strings",
        "h: ray_resources={'slots': nan} must map names to float values",
        "h: ray_extra_env={'A': None, 'B': [1]} must map names to str values",
    ]
    with pytest.raises(SettingsError, match=r"^h: ray_resources=\[1\] must be a mapping$"):
        settings_from_data("h", {"ray_resources": [1]})


def test_durations_and_sizes_are_whole_strings():
    with pytest.raises(SettingsError) as error:
        settings_from_data("h", {"prometheus_scrape_interval": "15s\n", "ray_shm_size": 2, "grafana_port": "3000"})
    assert str(error.value).splitlines() == [
        "h: ray_shm_size=2 must be a size like 512m or 2g",
        "h: prometheus_scrape_interval='15s\\n' must be a duration like 30s, 5m, 15d",
    ]
    assert settings_from_data("h", {"ray_shm_size": "4G", "prometheus_retention_size": ""}).ray_shm_size == "4G"


def test_every_bad_key_of_every_host_stops_the_inventory_at_once():
    from deploys.topology import build_cluster

    members = [
        ("head", {"ray_num_cpus": "many", "docker_source": "snap"}),
        ("worker-1", {"redis_port": 70000}),
        ("worker-2", {"ray_auth_mode": "none", "min_cpus": 0}),
    ]
    with pytest.raises(SettingsError) as error:
        build_cluster(members, {"head": ["head"], "workers": ["worker-1", "worker-2"]})
    assert str(error.value).splitlines() == [
        "head: docker_source='snap' must be one of: docker-ce, distro",
        "head: ray_num_cpus='many' must be a whole number >= 0",
        "worker-1: redis_port=70000 must be a port number, 1 to 65535",
        "worker-2: min_cpus=0 must be >= 1",
        "worker-2: ray_auth_mode='none' must be one of: token, disabled",
    ]


def test_the_readme_table_lists_choices_and_shows_defaults():
    table = markdown_table().splitlines()
    assert "| `docker_source` | `docker-ce` | docker-ce (Docker's apt repository) or distro" in table[4]
    assert table[4].endswith("(docker-ce / distro) |")
    assert "| `docker_registry_mirrors` | `[]` | Registry mirrors for daemon.json (URLs) |" in table
    assert "| `ray_num_cpus` |  | CPUs Ray offers on this node (default: all it sees) |" in table


def node(name: str, role: str, **data) -> tuple[str, str, Settings]:
    return name, role, settings_from_data(name, data, ssh_hostname=data.pop("address", None) or f"10.0.0.{len(name)}")


def test_a_cluster_needs_exactly_one_head():
    with pytest.raises(SettingsError, match=r"exactly one host; found 2 \(a, b\)"):
        check_cluster([node("a", "head", cluster_address="10.0.0.1"), node("b", "head", cluster_address="10.0.0.2")])
    with pytest.raises(SettingsError, match=r"found 0 \(none\)"):
        check_cluster([node("w", "worker", cluster_address="10.0.0.3")])


def test_mixed_ray_releases_are_refused_naming_each_node():
    with pytest.raises(SettingsError) as refused:
        check_cluster(
            [
                node("h", "head", cluster_address="10.0.0.1"),
                node("w1", "worker", cluster_address="10.0.0.2", ray_image="rayproject/ray:2.59.0-py311-cpu"),
                node("w2", "worker", cluster_address="10.0.0.3", ray_image="rayproject/ray:2.60.0-py310-cpu"),
                node("w3", "worker", cluster_address="10.0.0.4", ray_image="my/ray:latest"),
            ]
        )
    assert str(refused.value) == (
        "inventory: the Ray nodes' images carry different Ray releases ("
        "h: ray_image=rayproject/ray:2.60.0-py311-cpu is Ray 2.60.0 (Python 3.11); "
        "w1: ray_image=rayproject/ray:2.59.0-py311-cpu is Ray 2.59.0 (Python 3.11); "
        "w2: ray_image=rayproject/ray:2.60.0-py310-cpu is Ray 2.60.0 (Python 3.10); "
        "w3: ray_image=my/ray:latest is an image whose tag names no Ray release); Ray refuses mixed versions in "
        "one cluster: give every node and group a ray_image of one release (and one Python version)"
    )


def test_images_of_one_release_may_differ():
    check_cluster(
        [
            node("h", "head", cluster_address="10.0.0.1"),
            node("gpu", "worker", cluster_address="10.0.0.2", ray_image="rayproject/ray:2.60.0-py311-gpu"),
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
    assert documented >= set(Settings.model_fields)
