"""The cluster raydeploy was first written for: an example to copy, never contacted by the tests.

Head MASTER (192.168.40.240, 32 CPUs) and workers G-241..G-244 (192.168.40.241-244, 16 CPUs each):
96 CPUs in all. Run: `pyinfra inventories/prod.py deploys/ray.py --dry` to see the plan first.
"""

_common = {
    "ssh_user": "deploy",
    "_sudo": True,
    "docker_source": "docker-ce",
    "docker_users": ["deploy"],
    "ray_object_store_memory_mb": 16384,
    "ray_shm_size": "20g",
}

head = [
    ("MASTER", {**_common, "ssh_hostname": "192.168.40.240", "ray_num_cpus": 32}),
]

workers = [
    (f"G-{number}", {**_common, "ssh_hostname": f"192.168.40.{number}", "ray_num_cpus": 16})
    for number in range(241, 245)
]
