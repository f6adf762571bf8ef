"""The `peer` scenario: Ray's own cluster launcher (`ray up`, local provider) against our ray-deployment.

Both sides get the same fresh hosts with Docker already installed by our docker-installation
checkpoint (not counted), the same image from the lab's mirror (removed from the hosts before each
side, so both pull it), the same Ray resources (2 CPUs, a 300 MiB object store, 512 MiB /dev/shm),
and the same finish line: the head reports every node ALIVE. Before either side, every host pulls
the image at once (then removes it): the floor under both, so the report also says what each side
spends beyond pulling.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.labs import Lab, fresh_lab
from bench.measure import PYINFRA, BenchError, figure, run, timed

RAY_VERSION = "2.60.0"
RAY_VENV = Path(os.environ.get("RAYDEPLOY_CACHE_DIR", Path.home() / ".cache" / "raydeploy")) / "bench-ray-venv"
RAY_WHEELS = RAY_VENV.parent / "wheels" / f"ray-{RAY_VERSION}"
GIVE_UP_S = 600
POLL_S = 1.0
OBJECT_STORE_BYTES = 300 * 1024 * 1024
CONTAINER = "ray_container"
RESOURCES = f"--num-cpus=2 --object-store-memory={OBJECT_STORE_BYTES} --disable-usage-stats"

# What the launcher needed to run at all on these hosts (the JSON and the README carry this list).
PEER_SETTINGS = [
    {
        "setting": "RAY_UP_enable_autoscaler_v2=0 in the environment of `ray up`",
        "why": "Ray 2.60's default autoscaler v2 gives the local provider's head and workers one node type "
        "(local.cluster.node), counts the head as one of them, marks it terminated and never launches the "
        "last worker: 1 of 2 workers joined in 6 minutes (v1 starts both)",
    },
    {
        "setting": "rsync on the machine running `ray up` (apt-get install rsync)",
        "why": "the launcher rsyncs its bootstrap config and SSH key to the head; it also needs rsync on every "
        "host (in the lab's host image) and inside the Ray image (in the lab's Ray image)",
    },
    {
        "setting": "`ray` on the PATH of a login shell in the Ray image (/etc/profile.d/ray.sh)",
        "why": "the launcher runs every command through `docker exec ... bash --login -c`, and /etc/profile resets PATH",
    },
    {
        "setting": "head_ip and worker_ips are the hosts' lab-network addresses (10.213.X.0/24), reached directly",
        "why": "the local provider uses one address per host for SSH and for Ray, with port 22, and the head's "
        "autoscaler SSHes to the workers from inside the head container: the 127.0.0.1 port forwards our "
        "inventory uses cannot serve it",
    },
    {
        "setting": "no `--ulimit nofile=65536:65536` in docker.run_options, no `ulimit -n 65536` in the start commands",
        "why": "a container here cannot raise nofile above the VM's 20000 (no CAP_SYS_RESOURCE); Ray 2.60's local "
        "defaults ask for neither, so nothing had to be removed",
    },
]
# Chosen to match our side, not needed to run.
MATCHING_SETTINGS = [
    f"docker.run_options: --shm-size=512m; start commands: {RESOURCES}",
    "--dashboard-host=0.0.0.0 on the head, so this machine can poll its dashboard at the lab's published port",
    "docker.pull_before_run: true (both sides pull the image from the lab's mirror)",
]


def ray_cli() -> str:
    """The launcher's own `ray`, in a venv of its own (never the project's dependencies)."""
    ray = RAY_VENV / "bin" / "ray"
    if not ray.exists():
        subprocess.run(["python3", "-m", "venv", str(RAY_VENV)], check=True)
        source = ["--no-index", "--find-links", str(RAY_WHEELS)] if RAY_WHEELS.is_dir() else []
        subprocess.run(
            [str(RAY_VENV / "bin" / "pip"), "install", "-q", *source, f"ray[default]=={RAY_VERSION}"], check=True
        )
    return str(ray)


def cluster_yaml(lab: Lab, cluster_name: str, image: str) -> str:
    """The launcher's config for LAB: local provider, the lab's key, the mirror's image, no ulimits."""
    config = {
        "cluster_name": cluster_name,
        "provider": {"type": "local", "head_ip": lab.head_address, "worker_ips": lab.worker_addresses},
        "auth": {"ssh_user": "root", "ssh_private_key": lab.ssh_key},
        "docker": {
            "image": image,
            "container_name": CONTAINER,
            "pull_before_run": True,
            "run_options": ["--shm-size=512m"],
        },
        "min_workers": len(lab.worker_addresses),
        "max_workers": len(lab.worker_addresses),
        "head_start_ray_commands": [
            "ray stop",
            "ulimit -c unlimited; ray start --head --port=6379 --autoscaling-config=~/ray_bootstrap_config.yaml "
            f"--dashboard-host=0.0.0.0 {RESOURCES}",
        ],
        "worker_start_ray_commands": ["ray stop", f"ray start --address=$RAY_HEAD_IP:6379 {RESOURCES}"],
    }
    return json.dumps(config, indent=2)  # JSON is YAML


def alive_nodes(dashboard_url: str) -> int:
    """How many nodes the head's state API reports ALIVE (0 while the dashboard does not answer)."""
    url = f"{dashboard_url}/api/v0/nodes?limit=1000&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return len(json.load(response)["data"]["result"]["result"])
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return 0


def clear_hosts(lab: Lab, image: str) -> None:
    """No container left on any host, and the Ray image removed, so the next side starts from the same state."""
    for host in lab.host_names:
        left = lab.ssh(host, "docker ps -aq").split()
        if left:
            raise BenchError(f"lab host {host} still has containers {left} after `ray down`; remove them and rerun")
        lab.ssh(host, f"docker rmi -f {image} >/dev/null 2>&1 || true")


def pull_everywhere_s(lab: Lab, image: str) -> float:
    """Wall time for every host to pull IMAGE at once from the lab's mirror: the floor under both sides."""
    started = time.monotonic()
    pulls = {
        host: subprocess.Popen(
            ["ssh", "-F", lab.status["ssh"]["config"], host, f"docker pull --quiet {image}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in lab.host_names
    }
    for host, pull in pulls.items():
        _, error = pull.communicate()
        if pull.returncode != 0:
            raise BenchError(f"on lab host {host} ({lab.name}): docker pull {image} failed: {error.strip()[-2000:]}")
    return time.monotonic() - started


def ray_up_until_alive(lab: Lab, ray: str, config: Path, env: dict[str, str]) -> dict:
    """Time `ray up -y` and then until every node is ALIVE; give up after GIVE_UP_S."""
    expected = 1 + len(lab.worker_addresses)
    started = time.monotonic()
    try:
        up = subprocess.run(
            [ray, "up", "-y", "--no-config-cache", str(config)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=GIVE_UP_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"ray_up_s": GIVE_UP_S, "all_alive_s": GIVE_UP_S, "alive": 0, "expected": expected, "gave_up": True}
    up_s = time.monotonic() - started
    if up.returncode != 0:
        raise BenchError(
            f"`ray up` failed on lab {lab.name} (exit {up.returncode}):\n{(up.stdout + up.stderr)[-4000:]}"
        )
    alive = alive_nodes(lab.dashboard_url)
    while alive < expected and time.monotonic() - started < GIVE_UP_S:
        time.sleep(POLL_S)
        alive = alive_nodes(lab.dashboard_url)
    return {
        "ray_up_s": up_s,
        "all_alive_s": time.monotonic() - started,
        "alive": alive,
        "expected": expected,
        "gave_up": alive < expected,
    }


def peer_run(run_index: int, workers: int, default_autoscaler: bool) -> dict:
    """One fresh lab: Docker installed (not counted), `ray up` to all alive, `ray down`, ours to all alive."""
    ray = ray_cli()
    name = f"rdbench-peer-{run_index}"
    with fresh_lab(name, workers) as lab:
        image = lab.status["registry"]["images"]["ray"]
        run([PYINFRA, "-y", "inventories/lab.py", "deploys/docker-installation.py"], lab.env)
        work = Path(tempfile.mkdtemp(prefix=f"{name}-launcher-"))
        config = work / "cluster.yaml"
        config.write_text(cluster_yaml(lab, name, image))
        env = {"RAY_USAGE_STATS_ENABLED": "0"}
        if not default_autoscaler:
            env["RAY_UP_enable_autoscaler_v2"] = "0"
        clear_hosts(lab, image)
        pull_s = pull_everywhere_s(lab, image)
        clear_hosts(lab, image)
        try:
            peer = ray_up_until_alive(lab, ray, config, env)
        finally:
            launcher_down(ray, config, env, name, work)
        clear_hosts(lab, image)
        ours_s = timed([PYINFRA, "-y", "inventories/lab.py", "deploys/ray-deployment.py"], lab.env)
    return {**peer, "ours_s": ours_s, "pull_s": pull_s}


def scenario_peer(runs: int, workers: int, default_autoscaler: bool = False) -> dict:
    results = []
    for index in range(runs):
        result = peer_run(index, workers, default_autoscaler)
        results.append(result)
        verdict = "GAVE UP" if result["gave_up"] else "all alive"
        print(
            f"peer run {index + 1}: ray up {result['ray_up_s']:.1f} s, {verdict} "
            f"({result['alive']}/{result['expected']}) at {result['all_alive_s']:.1f} s; "
            f"ours {result['ours_s']:.1f} s; every host pulling the image at once {result['pull_s']:.1f} s",
            flush=True,
        )
    return {
        "figures": {
            "peer_ray_up_returns": figure([r["ray_up_s"] for r in results]),
            "peer_ray_up_all_alive": figure([r["all_alive_s"] for r in results]),
            "ours_ray_deployment_all_alive": figure([r["ours_s"] for r in results]),
            "peer_over_ours_ratio": figure([r["all_alive_s"] / r["ours_s"] for r in results], unit="x"),
            # Both sides must pull the image; what each spends beyond that floor is what each one adds.
            "image_pull_everywhere": figure([r["pull_s"] for r in results]),
            "peer_over_ours_beyond_pull": figure(
                [(r["all_alive_s"] - r["pull_s"]) / max(r["ours_s"] - r["pull_s"], 0.1) for r in results], unit="x"
            ),
        },
        "peer_gave_up": [r["gave_up"] for r in results],
        "peer_settings_needed": PEER_SETTINGS,
        "peer_settings_matching_ours": MATCHING_SETTINGS,
        "peer_autoscaler": "v2 (Ray's default)" if default_autoscaler else "v1 (RAY_UP_enable_autoscaler_v2=0)",
    }


def launcher_down(ray: str, config: Path, env: dict[str, str], name: str, work: Path) -> None:
    """`ray down` of the launcher's cluster NAME, then its local state and work directory gone, whatever
    state the cluster is in."""
    subprocess.run([ray, "down", "-y", str(config)], env={**os.environ, **env}, capture_output=True, check=False)
    for state in Path("/tmp/ray").glob(f"cluster-{name}.*"):
        state.unlink()  # the local provider's node state on this machine
    shutil.rmtree(work, ignore_errors=True)
