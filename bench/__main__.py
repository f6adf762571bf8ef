"""`python -m bench SCENARIO`: time a scenario on its own fresh labs; print a table, write the figures as JSON.

Scenarios (1 head + --workers workers, default 2; images already in the lab's mirror):
  lab-up    warm `raydeploy lab up` (median of --runs); with --cold, first one cold `lab up` with
            no lab image and no download cache (it removes the raydeploy-lab/* images: every lab
            on the machine rebuilds them next time).
  deploy    on --runs fresh labs: `raydeploy deploy --auto-approve`, in total and per checkpoint,
            then pyinfra's no-op re-run (must change nothing) and dry run (`--dry`) of deploys/ray.py,
            then `raydeploy deploy --auto-approve` again (a no-op run through the wrapper).
  validate  on one fresh deployed lab: `raydeploy validate --health-only` (at least 5 runs) and the
            full `raydeploy validate` with the smoke job.
  peer      on --runs fresh labs with Docker installed (not counted): Ray's own launcher
            (`ray up -y`, local provider, the mirror's image) until the head reports every node
            alive (given up after 600 s), `ray down`, then our ray-deployment checkpoint on the same
            hosts until every node is alive; both times and their ratio.
  scale     for 1, 2, 4 and 8 workers (--scale-workers), a fresh lab fully deployed (not counted),
            then the no-op re-run and the dry run (median of --runs each): the curve and its growth.
  ui        on one fresh deployed lab: each web console page through `raydeploy api`, 50 loads with a
            signed-in session (ms to the whole answer; target < 150 ms) and 10 in Debian's Chromium
            (first contentful paint; target < 1 s); 5 and 3 of the pages that plan or read a host.
  api       on one fresh deployed lab: `GET /api/v1/cluster/health` through `raydeploy api`,
            60 requests 0.25 s apart per run (every answer, and those not from its 5 s cache), in ms.
  ssh-latency
            on one fresh lab (1 worker): one `true` over SSH, 50 times per run, with Nagle's
            algorithm on (paramiko's default) and off (what our deploys set), in ms.
  grow      on --runs fresh labs, deployed (not counted): one more worker (`lab up --workers N+1`),
            Docker and its images on it (not counted), then `raydeploy deploy --auto-approve`.
  reboot    on one fresh deployed lab: restart the head host's container, then a worker host's
            (--runs times each), until every Ray node is alive again.
  destroy   on --runs fresh labs, each deployed (not counted): `raydeploy destroy --auto-approve`
            (plan, approval, teardown of every host; target under 20 s for 3 hosts), then again
            (nothing left to remove).
  upgrade   on --runs fresh labs made at Ray 2.59.0 and deployed (not counted): `lab up --ray-version
            2.60.0`, then `raydeploy deploy --auto-approve` (the whole upgrade) and its downtime (from
            the first Ray container stopped to the head reporting 2.60.0 with every node alive, target
            under 30 s), then `raydeploy rollback --auto-approve` the same way back to 2.59.0. Peer:
            `ray up` on identical hosts at 2.59.0, docker.image edited to 2.60.0 and `ray up` again,
            then `ray down` + `ray up` (see bench/upgrade.py for how downtime is read).
  alerts    on one fresh deployed lab with Alertmanager's webhook pointed at a receiver on this machine:
            a worker's Ray container stopped until RayNodeLost reaches the receiver (target under
            alert_ray_node_lost_for + 30 s; the bench sets 30 s), started until the resolved notice (--runs).
  webhooks  no lab: a raydeploy event to its signed delivery at a real receiver on loopback, sent by a
            real `raydeploy api` and by the process that wrote it (20 events per run; target < 1 s median).
  all       every scenario above, each on its own fresh labs: one table, one JSON file.

Example: .venv/bin/python -m bench all --runs 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.alerts import scenario_alerts
from bench.api import scenario_api
from bench.day2 import scenario_grow, scenario_reboot
from bench.measure import BenchError, machine
from bench.peer import scenario_peer
from bench.scenarios import (
    SCALE_WORKERS,
    scenario_deploy,
    scenario_destroy,
    scenario_lab_up,
    scenario_scale,
    scenario_validate,
)
from bench.ssh_latency import scenario_ssh_latency
from bench.ui import scenario_ui
from bench.upgrade import scenario_upgrade
from bench.webhooks import scenario_webhooks

SCENARIOS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "lab-up": lambda args: scenario_lab_up(args.runs, args.workers, args.cold),
    "deploy": lambda args: scenario_deploy(args.runs, args.workers),
    "validate": lambda args: scenario_validate(args.runs, args.workers),
    "peer": lambda args: scenario_peer(args.runs, args.workers, args.peer_default_autoscaler),
    "scale": lambda args: scenario_scale(args.runs, tuple(args.scale_workers)),
    "api": lambda args: scenario_api(args.runs, args.workers),
    "ui": lambda args: scenario_ui(args.runs, args.workers),
    "ssh-latency": lambda args: scenario_ssh_latency(args.runs),
    "grow": lambda args: scenario_grow(args.runs, args.workers),
    "reboot": lambda args: scenario_reboot(args.runs, args.workers),
    "destroy": lambda args: scenario_destroy(args.runs, args.workers),
    "upgrade": lambda args: scenario_upgrade(args.runs, args.workers),
    "alerts": lambda args: scenario_alerts(args.runs, args.workers),
    "webhooks": lambda args: scenario_webhooks(args.runs),
}


def worker_counts(text: str) -> list[int]:
    """`1,2,4,8` -> [1, 2, 4, 8]; each between 1 and 8 (what `lab up` allows)."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"worker counts are integers separated by commas, not {text!r}") from None
    if not counts or any(count < 1 or count > 8 for count in counts):
        raise argparse.ArgumentTypeError(f"each worker count must be 1..8 (a lab's limit), got {text!r}")
    return counts


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument(
        "--workers", type=int, choices=range(1, 9), default=2, metavar="1..8", help="workers per lab (default 2)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs to take the median of (default 3)")
    parser.add_argument(
        "--cold", action="store_true", help="lab-up: also time one cold run (removes the lab images first)"
    )
    parser.add_argument(
        "--scale-workers",
        type=worker_counts,
        default=list(SCALE_WORKERS),
        help="scale: worker counts, comma-separated (default 1,2,4,8)",
    )
    parser.add_argument(
        "--peer-default-autoscaler",
        action="store_true",
        help="peer: leave Ray's default autoscaler v2 on (with the local provider it never starts the last worker)",
    )
    parser.add_argument("--output", type=Path, help="JSON file (default bench/results/SCENARIO-TIME.json)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def run_scenarios(names: list[str], args: argparse.Namespace, write: Callable[[dict], None]) -> dict:
    """Run each scenario in turn; one that fails is recorded with its error and the others still run."""
    results: dict = {}
    for name in names:
        print(f"== {name}", flush=True)
        started, load_at_start = time.monotonic(), os.getloadavg()[0]
        try:
            results[name] = SCENARIOS[name](args)
        except BenchError as error:
            results[name] = {"error": str(error)}
            print(f"{name} failed: {error}", flush=True)
        except Exception as error:  # a bug in one scenario must not lose the others' figures
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            print(f"{name} failed: {error}", flush=True)
        results[name]["wall_s"] = round(time.monotonic() - started, 1)
        # Other work on the machine skews wall times: say how busy it was around each scenario.
        results[name]["load_average_1m"] = {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)}
        write(results)  # a late failure keeps what was measured before it
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    output = args.output or report.RESULTS / f"{args.scenario}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    header = {
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "started_at": started_at,
        "workers": args.workers,
        "machine": machine(),
    }

    def write(results: dict) -> None:
        report.write({**header, "machine_at_end": machine(), "scenarios": results}, output, args.scenario)

    results = run_scenarios(names, args, write)
    print(report.table(results))
    if "curve" in results.get("scale", {}):
        print(report.curve_table(results["scale"]["curve"]))
    print(f"written to {output}")
    return 1 if any("error" in result for result in results.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
