"""bench/ is not run by the tests; only its import, argument parsing and pure helpers are checked here."""

from __future__ import annotations

import json
import re

import pytest

from bench.__main__ import SCENARIOS, parse
from bench.labs import Lab
from bench.measure import checkpoint_times, figure
from bench.peer import cluster_yaml
from bench.report import meets
from bench.scenarios import growth
from tests.conftest import REPO


def test_bench_parses_a_scenario_and_its_options():
    args = parse(["lab-up", "--cold", "--runs", "5", "--workers", "1"])
    assert (args.scenario, args.cold, args.runs, args.workers) == ("lab-up", True, 5, 1)
    assert {
        "lab-up",
        "deploy",
        "validate",
        "peer",
        "scale",
        "api",
        "ssh-latency",
        "grow",
        "reboot",
        "destroy",
        "upgrade",
        "ui",
        "alerts",
        "webhooks",
    } == set(SCENARIOS)


def test_bench_offers_all_and_the_peer_and_scale_options():
    assert parse(["all"]).scenario == "all"
    assert parse(["scale"]).scale_workers == [1, 2, 4, 8]
    assert parse(["scale", "--scale-workers", "1,8"]).scale_workers == [1, 8]
    assert parse(["peer", "--peer-default-autoscaler"]).peer_default_autoscaler is True
    assert parse(["peer"]).peer_default_autoscaler is False


@pytest.mark.parametrize(
    "argv",
    [
        ["warp-speed"],
        ["scale", "--scale-workers", "1,9"],
        ["scale", "--scale-workers", "two"],
        ["deploy", "--runs", "0"],
    ],
)
def test_bench_refuses_bad_arguments_with_usage_exit(argv):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2


def test_a_figure_reports_median_min_max_and_runs():
    assert figure([3.0, 1.0, 2.0]) == {
        "median": 2.0,
        "min": 1.0,
        "max": 3.0,
        "runs": 3,
        "unit": "s",
        "samples": [3.0, 1.0, 2.0],
    }


def test_checkpoint_times_are_read_from_the_wrapper_output():
    output = "docker-installation: running\ndocker-installation: done, 9 change(s) in 31.4 s\nray-deployment: done, 0 change(s) in 2.0 s\n"
    assert checkpoint_times(output) == {"docker-installation": 31.4, "ray-deployment": 2.0}


def test_scale_growth_is_the_percent_from_fewest_to_most_workers():
    curve = [{"noop_median_s": 4.0, "dry_median_s": 2.0}, {"noop_median_s": 5.0, "dry_median_s": 2.0}]
    assert growth(curve) == {"noop": 25.0, "dry": 0.0}


def test_ratio_target_is_met_from_above_and_time_targets_from_below():
    assert meets("peer_over_ours_ratio", 3.2) == "yes"
    assert meets("peer_over_ours_ratio", 1.7) == "NO"
    assert meets("noop_rerun", 4.9) == "yes"
    assert meets("validate_health_only", 2.0) == "NO"


def two_host_lab(name: str) -> Lab:
    """A bench lab of a head and one worker, as `raydeploy lab status --json` describes it (no hosts behind it)."""
    status = {
        "hosts": [
            {"name": "head", "role": "head", "cluster_address": "10.213.9.10"},
            {"name": "worker-1", "role": "worker", "cluster_address": "10.213.9.11"},
        ],
        "ssh": {"key": "/lab/id_ed25519", "config": "/lab/ssh_config"},
        "urls": {},
    }
    return Lab(name=name, env={}, up_s=1.0, status=status)


def test_the_launcher_config_uses_the_lab_addresses_and_raises_no_ulimit():
    lab = two_host_lab("rdbench-peer-0")
    config = json.loads(cluster_yaml(lab, "rdbench-peer-0", "rayproject/ray:2.60.0-py311-cpu"))
    assert config["provider"] == {"type": "local", "head_ip": "10.213.9.10", "worker_ips": ["10.213.9.11"]}
    assert config["min_workers"] == config["max_workers"] == 1
    commands = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "ulimit -n" not in commands and "nofile" not in " ".join(config["docker"]["run_options"])


README = " ".join((REPO / "README.md").read_text().split())
AFTER_ISSUE_13 = "bench/results/deploy-20261130T081118.json"


def test_every_bench_result_the_readme_cites_is_in_the_repository():
    cited = set(re.findall(r"bench/results/[\w.-]+\.json", README))
    assert AFTER_ISSUE_13 in cited
    assert [path for path in sorted(cited) if not (REPO / path).is_file()] == []


def test_the_readme_quotes_the_figures_of_the_deploy_result_it_cites():
    figures = json.loads((REPO / AFTER_ISSUE_13).read_text())["scenarios"]["deploy"]["figures"]
    median = {name: figure["median"] for name, figure in figures.items()}
    quoted = [
        f"full deploy 110.2 s before / {median['full_deploy']:.1f} s after",
        f"dry run 2.73 / {median['dry_run']:.2f} s",
        f"no-op re-run 2.48 / {median['noop_rerun']:.2f} s",
        f"final validation included) 20.0 / {median['wrapper_noop_rerun']:.1f} s",
    ]
    assert [phrase for phrase in quoted if phrase not in README] == []
