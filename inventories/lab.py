"""The local lab as a pyinfra inventory: groups `head` and `workers`, read from the lab's state file.

`raydeploy lab up` writes that file; RAYDEPLOY_LAB picks a lab other than the default one.
"""

import sys

from raydeploy.lab.state import NoLabError, lab_dir, load

try:
    _lab = load()
except NoLabError as error:
    sys.exit(str(error))


def _access_urls(lab_host):
    published = lab_host.published or {}
    urls = {
        "dashboard_access_url": "ray-dashboard",
        "prometheus_access_url": "prometheus",
        "grafana_access_url": "grafana",
        "alertmanager_access_url": "alertmanager",
    }
    return {key: f"http://127.0.0.1:{published[service]}" for key, service in urls.items() if service in published}


def _host(lab_host):
    return (
        lab_host.name,
        {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": lab_host.ssh_port,
            "ssh_user": _lab.ssh_user,
            "ssh_key": _lab.ssh_key,
            "ssh_known_hosts_file": _lab.known_hosts,
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            "cluster_address": lab_host.cluster_address,
            "docker_source": "distro",
            "docker_registry_mirrors": [_lab.registry_mirror],
            "docker_insecure_registries": [_lab.registry_address],
            # The lab's current Ray version (`raydeploy lab up --ray-version V` switches it).
            "ray_image": _lab.ray_image,
            "redis_image": _lab.images.get("redis", "redis:7.0"),
            "prometheus_image": _lab.images.get("prometheus", "prom/prometheus:v2.42.0"),
            "node_exporter_image": _lab.images.get("node-exporter", "prom/node-exporter:v1.5.0"),
            "alertmanager_image": _lab.images.get("alertmanager", "prom/alertmanager:v0.25.0"),
            # The lab's images are rebuilt from Debian: Ray runs as root, Debian's redis user is 100
            # (the official images: 1000 and 999). Their secret files are owned by these users.
            "ray_container_uid": 0,
            "redis_container_uid": 100,
            "cluster_name": _lab.name,
            # The head's services as this machine reaches them: published on 127.0.0.1.
            **_access_urls(lab_host),
            # Fast enough that the tests see a lost node within seconds.
            "prometheus_scrape_interval": "5s",
            "prometheus_evaluation_interval": "5s",
            # No image of either can be had offline (README: "What cannot run here").
            "grafana_enabled": False,
            "cadvisor_enabled": False,
            "monitoring_off_reason": (
                "its image cannot be had on this machine (no registry but the lab's own mirror, "
                "built from Debian and PyPI); see the README, 'What cannot run here'"
            ),
            "state_dir": str(lab_dir(_lab.name)),
            # Every lab host sees the whole machine: keep Ray's memory claims small.
            "ray_object_store_memory_mb": 300,
            "ray_shm_size": "512m",
            "ray_num_cpus": 2,
            "min_disk_free_gb": 5,
        },
    )


head = [_host(_lab.head)]
workers = [_host(worker) for worker in _lab.workers]
