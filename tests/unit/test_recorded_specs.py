"""Recorded specs: what a successful run converged to, written whole, read back checked, compared."""

from __future__ import annotations

import json
import stat

import pytest

from deploys.recorded_specs import (
    SpecError,
    cluster_of,
    read_spec,
    recorded_runs,
    settings_changes,
    spec_of,
    write_spec,
)
from validate.inventory import load

RUN, LATER = "20261130T101500Z-1a2b3c", "20261130T111500Z-4d5e6f"


@pytest.fixture
def spec() -> dict:
    return spec_of(load("inventories/prod.py").cluster)


def test_a_spec_holds_every_hosts_role_and_settings_and_rebuilds_the_same_cluster(spec):
    assert {host["role"] for host in spec["hosts"].values()} == {"head", "worker"}
    assert all("ray_image" in host["settings"] for host in spec["hosts"].values())
    assert spec_of(cluster_of(spec)) == spec
    here = load("inventories/prod.py", "/srv/raydeploy-state").cluster
    assert {node.settings.state_dir for node in cluster_of(spec, local=here).hosts} == {"/srv/raydeploy-state"}


def test_a_spec_is_written_0600_and_read_back_checked(tmp_path, spec):
    path = write_spec(tmp_path, RUN, spec, rolled_back_to=LATER)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not list(path.parent.glob("*.tmp"))
    back = read_spec(tmp_path, RUN)
    assert back["run_id"] == RUN and back["rolled_back_to"] == LATER and back["digest"] == spec["digest"]
    altered = json.loads(path.read_text())
    next(iter(altered["hosts"].values()))["settings"]["ray_image"] = "evil/ray:2.60.0"
    path.write_text(json.dumps(altered))
    with pytest.raises(SpecError, match="does not match its digest: it was altered"):
        read_spec(tmp_path, RUN)


def test_a_missing_spec_or_a_bad_run_id_says_what_to_do(tmp_path):
    with pytest.raises(SpecError, match="recorded no spec"):
        read_spec(tmp_path, RUN)
    with pytest.raises(SpecError, match=r"is not a run id .* see `raydeploy history`"):
        read_spec(tmp_path, "../../etc/passwd")


def test_runs_are_listed_oldest_first_and_changes_are_named_per_host(tmp_path, spec):
    write_spec(tmp_path, LATER, spec)
    write_spec(tmp_path, RUN, spec)
    assert recorded_runs(tmp_path) == [RUN, LATER]
    upgraded = json.loads(json.dumps(spec))
    head = next(name for name, host in spec["hosts"].items() if host["role"] == "head")
    upgraded["hosts"][head]["settings"]["ray_image"] = "rayproject/ray:2.61.0-py311-cpu"
    assert settings_changes(upgraded, spec) == {
        head: ["ray_image: 'rayproject/ray:2.61.0-py311-cpu' -> 'rayproject/ray:2.60.0-py311-cpu'"]
    }
