"""Integration tests run on real lab hosts; every lab made here is named rdtest-* and removed after."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import testinfra

from raydeploy.lab import state as lab_state
from raydeploy.lab.engine import Engine
from raydeploy.lab.images import ray_local_tag, ray_mirror_ref
from raydeploy.lab.lifecycle import Lab
from raydeploy.lab.state import LAB_LABEL, LabState
from tests.conftest import BIN, run_command


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)

    # Tests of the fresh (not yet deployed) lab run before anything deploys onto it, whichever
    # file they are in: `deployed` deploys onto the same lab.
    def needs_fresh(item: pytest.Item) -> bool:
        names = getattr(item, "fixturenames", ())
        return "fresh_lab" in names and "deployed" not in names

    items.sort(key=lambda item: 0 if needs_fresh(item) else 1)


def pytest_itemcollected(item: pytest.Item) -> None:
    # As each test is collected: pytest-xdist reads the groups in a collection_modifyitems of its own,
    # which may run before ours.
    item.add_marker(pytest.mark.xdist_group(worker_group(item)))


def worker_group(item: pytest.Item) -> str:
    """Which tests run in one pytest-xdist worker (scripts/test runs `--dist loadgroup`), in order.

    The tests of the session's shared labs (`fresh_lab` then `deployed`, and `lab`) stay together, each
    other file with its own lab stays whole, and tests run beside them in the other workers.
    """
    names = set(getattr(item, "fixturenames", ()))
    if names & {"fresh_lab", "deployed"}:
        return "deploy-lab"
    if "lab" in names:
        return "main-lab"
    return item.nodeid.split("::")[0]


@dataclass
class TestLab:
    """A lab made for the tests, and the environment that points commands at it."""

    __test__ = False

    name: str
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {"RAYDEPLOY_LAB": self.name, "RAYDEPLOY_LAB_HOME": str(self.home)}

    def raydeploy(self, *args: str, check: bool = True):
        return run_command([str(BIN / "raydeploy"), *args], env=self.env, check=check)

    def pyinfra(self, *args: str, check: bool = True):
        # -y skips pyinfra's change detection, which a dry run is for.
        confirm = [] if "--dry" in args else ["-y"]
        return run_command([str(BIN / "pyinfra"), *confirm, *args], env=self.env, check=check)

    def up(self, *args: str, check: bool = True):
        return self.raydeploy("lab", "up", *args, check=check)

    def down(self):
        return self.raydeploy("lab", "down")

    def state(self) -> LabState:
        os.environ["RAYDEPLOY_LAB_HOME"] = str(self.home)
        return lab_state.load(self.name)

    def host(self, name: str):
        """A testinfra host reached over SSH with the lab's key and pinned host key."""
        return testinfra.get_host(f"ssh://{name}", ssh_config=self.state().ssh_config)

    def leftovers(self) -> dict[str, list[str]]:
        engine = Engine()
        label = f"{LAB_LABEL}={self.name}"
        return {kind: engine.ids_with_label(kind, label) for kind in ("container", "volume", "network")}


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The real Docker engine; without one the lab tests fail (scripts/test starts it)."""
    engine = Engine()
    engine.ping()
    return engine


@pytest.fixture(scope="session")
def make_lab(engine, tmp_path_factory) -> Iterator:
    """Makes labs named rdtest-<pid>-<suffix>; removes every one of them at the end of the session."""
    made: list[TestLab] = []
    home = tmp_path_factory.mktemp("labs")

    def make(suffix: str) -> TestLab:
        lab = TestLab(name=f"rdtest-{os.getpid()}-{suffix}", home=home)
        made.append(lab)
        return lab

    yield make
    for lab in made:
        lab.down()


@pytest.fixture(scope="session")
def lab(make_lab) -> TestLab:
    """The shared 1 head + 2 workers lab, up and untouched by destructive tests."""
    lab = make_lab("main")
    lab.up("--workers", "2")
    return lab


# Ray's Python package removed: the `ray` command, and so every Ray container of this image, fails at once.
BROKEN_RAY_DOCKERFILE = """\
FROM {base}
RUN rm -rf /opt/ray/lib/python3.11/site-packages/ray && ! /opt/ray/bin/python -c 'import ray'
LABEL {label}
"""


def broken_ray_ref(version: str) -> str:
    """The name the lab's mirror serves the broken image of Ray VERSION by."""
    return f"rayproject/ray:{version}-py311-broken"


def push_broken_ray_image(lab: TestLab, make_current: bool = False) -> str:
    """Build a Ray image whose Ray exits at once, FROM the lab's current Ray image (the one `lab up`
    built from PyPI), push it into the lab's mirror as rayproject/ray:<version>-py311-broken, and
    return that name. Its tag looks like a Ray release's; `import ray` fails in it.

    The local image, raydeploy-lab/<lab>-ray:<version>-py311-broken, is labelled raydeploy.lab=<lab>:
    the lab's `lab down` removes it. With MAKE_CURRENT it also becomes the lab's current Ray version,
    named `<version>-broken`: the lab inventory's ray_image, as if an operator had set it
    (`lab up --ray-version <version>` switches back).
    """
    state = lab.state()
    version = state.ray_version
    assert state.ray_image == ray_mirror_ref(version), f"lab {lab.name} runs no Ray release but {state.ray_image}"
    local_tag = f"raydeploy-lab/{lab.name}-ray:{version}-py311-broken"
    dockerfile = BROKEN_RAY_DOCKERFILE.format(base=ray_local_tag(version), label=f"{LAB_LABEL}={lab.name}")
    Engine().run(["build", "--force-rm", "--tag", local_tag, "-"], input_bytes=dockerfile.encode())
    reference = broken_ray_ref(version)
    Lab(lab.name, progress=lambda message: None).push_image(
        local_tag, reference, ray_version=f"{version}-broken" if make_current else None
    )
    return reference


@pytest.fixture(scope="session")
def broken_ray_image():
    """`broken_ray_image(lab, make_current=False) -> mirror name`: see push_broken_ray_image."""
    return push_broken_ray_image


def grand_total(output: str) -> tuple[int, int]:
    """(operations that changed something, operations that errored) from pyinfra's results table."""
    match = re.search(r"Grand total\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)", output)
    assert match, output
    changed, errors = (0 if value == "-" else int(value) for value in match.groups()[:2])
    return changed, errors


def changed_operations(output: str) -> list[str]:
    rows = re.findall(r"^\s{4}(\S.*?)\s{2,}(\d+)\s+(\d+|-)\s+(\d+|-)\s+(\d+|-)\s*$", output, flags=re.MULTILINE)
    return [row[0] for row in rows if row[2] != "-" and not row[0].startswith("Grand total")]


def deploy(lab: TestLab, file: str = "deploys/ray.py", *extra: str, check: bool = True):
    result = lab.pyinfra("inventories/lab.py", file, *extra, check=check)
    result.output = result.stdout + result.stderr
    return result


class DeployedCluster:
    """The deployed lab cluster as an operator sees it from this machine."""

    def __init__(self, lab: TestLab):
        self.lab = lab
        state = lab.state()
        self.dashboard = f"http://127.0.0.1:{state.head.published['ray-dashboard']}"
        self.prometheus = f"http://127.0.0.1:{state.head.published['prometheus']}"
        secrets = lab.home / lab.name / "secrets"
        self.token = (secrets / "ray-auth-token").read_text().strip()
        self.redis_password = (secrets / "redis-password").read_text().strip()

    def alive_nodes(self) -> dict[str, float]:
        """Alive Ray nodes by address, with their CPUs, from Ray's state API (the GCS's view)."""
        response = requests.get(
            f"{self.dashboard}/api/v0/nodes",
            params={"limit": 1000, "filter_keys": "state", "filter_predicates": "=", "filter_values": "ALIVE"},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        response.raise_for_status()
        rows = response.json()["data"]["result"]["result"]
        return {row["node_ip"]: float(row["resources_total"].get("CPU", 0)) for row in rows}

    def wait_for_alive(self, count: int, timeout_s: float = 180) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        nodes: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                nodes = self.alive_nodes()
            except requests.RequestException:
                nodes = {}
            if len(nodes) == count:
                return nodes
            time.sleep(2)
        raise AssertionError(f"{count} alive Ray nodes expected within {timeout_s} s, saw {nodes}")

    def query(self, promql: str) -> list[dict]:
        """An instant query against the deployed Prometheus: its result vector."""
        response = requests.get(f"{self.prometheus}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def query_at(self, promql: str, at: float) -> list[dict]:
        response = requests.get(f"{self.prometheus}/api/v1/query", params={"query": promql, "time": at}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def query_names(self) -> list[str]:
        """Every metric name Prometheus holds."""
        response = requests.get(f"{self.prometheus}/api/v1/label/__name__/values", timeout=10)
        response.raise_for_status()
        return response.json()["data"]

    def alerts(self) -> list[dict]:
        """Pending and firing alerts."""
        response = requests.get(f"{self.prometheus}/api/v1/alerts", timeout=10)
        response.raise_for_status()
        return response.json()["data"]["alerts"]

    def wait_until_settled(self, timeout_s: float = 120, every_target: bool = False) -> None:
        """Every Ray node alive, and Prometheus scraping each (tests that stop things leave it catching up);
        with EVERY_TARGET, every target Prometheus has up too (what monitoring-deployment's own wait checks)."""
        self.wait_for_alive(3, timeout_s)
        deadline = time.monotonic() + timeout_s
        nodes: set = set()
        while time.monotonic() < deadline:
            try:
                targets = self.targets()
            except requests.RequestException:
                targets = []
            ray = [t for t in targets if t["labels"].get("job") == "ray"]
            nodes = {t["labels"].get("node") for t in ray if t["health"] == "up"}
            # Every Ray target up, not one per node: a recreated head's other targets lag behind.
            if nodes >= {"head", "worker-1", "worker-2"} and all(
                t["health"] == "up" for t in (targets if every_target else ray)
            ):
                return
            time.sleep(2)
        raise AssertionError(f"Prometheus scrapes Ray on {sorted(nodes)} only after {timeout_s} s")

    def jobs(self) -> list[dict]:
        """The Ray jobs the head knows of."""
        response = requests.get(
            f"{self.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def targets(self) -> list[dict]:
        response = requests.get(f"{self.prometheus}/api/v1/targets", params={"state": "active"}, timeout=10)
        response.raise_for_status()
        return response.json()["data"]["activeTargets"]

    def container(self, host: str, name: str) -> dict:
        return json.loads(self.lab.host(host).check_output(f"docker inspect {name}"))[0]


@pytest.fixture(scope="session")
def fresh_lab(make_lab) -> TestLab:
    """A 1+2 lab for the deploy tests: fresh until `deployed` deploys onto it."""
    lab = make_lab("deploy")
    lab.up("--workers", "2")
    return lab


@pytest.fixture(scope="session")
def deployed(fresh_lab) -> DeployedCluster:
    """The fresh lab after a full deploy (shared by the deploy and monitoring tests)."""
    result = deploy(fresh_lab)
    assert grand_total(result.output)[1] == 0, result.output
    return DeployedCluster(fresh_lab)
