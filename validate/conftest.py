"""`pytest validate/ --inventory inventories/lab.py`: the same checks as `raydeploy validate`, as pytest tests.

The inventory gives the hosts and their SSH settings (an ssh_config is written from it for
testinfra); `--hosts ssh://head,ssh://worker-1` (testinfra's own option) narrows the hosts.
A component the inventory turns off is skipped with the reason; anything else that is not a pass
fails the test.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from validate.inventory import InventoryError, load, write_ssh_config
from validate.results import NOT_DEPLOYED, PASS, Result
from validate.runner import SecretReader


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--inventory", help="pyinfra inventory file of the cluster to validate (required)")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--inventory")
    if not path:
        raise pytest.UsageError("validate/ needs --inventory, e.g. pytest validate/ --inventory inventories/lab.py")
    try:
        loaded = load(path)
    except InventoryError as error:
        raise pytest.UsageError(str(error)) from None
    config._raydeploy_inventory = loaded
    if config.option.hosts is None:
        config.option.hosts = ",".join(f"ssh://{name}" for name in loaded.ssh)
    if config.option.ssh_config is None:
        scratch = Path(tempfile.mkdtemp(prefix="raydeploy-validate-"))
        config.option.ssh_config = str(write_ssh_config(loaded.ssh, scratch))


@pytest.fixture(scope="session")
def loaded(request):
    return request.config._raydeploy_inventory


@pytest.fixture(scope="session")
def cluster(loaded):
    return loaded.cluster


@pytest.fixture(scope="session")
def secret_of(cluster):
    return SecretReader(cluster)


@pytest.fixture
def node(host, cluster):
    return cluster.node(host.backend.hostname)


def expect(results: list[Result]) -> None:
    """Fail on anything but pass; skip when everything left is a component turned off."""
    bad = [r for r in results if r.status not in (PASS, NOT_DEPLOYED)]
    assert not bad, "\n".join(f"{r.host}: {r.check}: {r.status}: {r.detail}" for r in bad)
    off = [r for r in results if r.status == NOT_DEPLOYED]
    if off and len(off) == len(results):
        pytest.skip("; ".join(f"{r.check} not deployed: {r.detail}" for r in off))
