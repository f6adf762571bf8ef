"""Integration tests run on real lab hosts; every lab made here is named rdtest-* and removed after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from raydeploy.lab import state as lab_state
from raydeploy.lab.engine import Engine
from raydeploy.lab.state import LAB_LABEL, LabState
from tests.conftest import BIN, run_command


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


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
