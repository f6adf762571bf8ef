"""bench/ is not run by the tests; only its import and argument parsing are checked here."""

from __future__ import annotations

import pytest

from bench.__main__ import SCENARIOS, figure, parse


def test_bench_parses_a_scenario_and_its_options():
    args = parse(["lab-up", "--cold", "--runs", "5", "--workers", "1"])
    assert (args.scenario, args.cold, args.runs, args.workers) == ("lab-up", True, 5, 1)
    assert {"lab-up", "deploy"} <= set(SCENARIOS)


def test_bench_refuses_an_unknown_scenario():
    with pytest.raises(SystemExit) as exit_info:
        parse(["warp-speed"])
    assert exit_info.value.code == 2


def test_a_figure_reports_median_min_max_and_runs():
    assert figure([3.0, 1.0, 2.0]) == {
        "median_s": 2.0,
        "min_s": 1.0,
        "max_s": 3.0,
        "runs": 3,
        "samples_s": [3.0, 1.0, 2.0],
    }
