"""The examples in docstrings are tests: every module that shows one (`>>>`) runs it here."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import REPO

MODULES = sorted(
    str(path.relative_to(REPO).with_suffix("")).replace("/", ".")
    for package in ("raydeploy", "deploys", "facts", "validate")
    for path in (REPO / package).rglob("*.py")
    if ">>> " in path.read_text()
)


def test_the_modules_with_examples_are_found():
    assert "deploys.ray_versions" in MODULES and "raydeploy.checkpoints" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_in_a_modules_docstrings_hold(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
