"""The upgrade scenario's measuring, without a lab: which events start a downtime, which poll ends it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from bench.peer import cluster_yaml
from bench.report import meets, table
from bench.upgrade import (
    GIVE_UP_S,
    Change,
    Probe,
    Sample,
    back_at,
    change_figures,
    describe_no_downtime,
    edit_image_outcome,
    launcher_said,
    settled_at,
    stop_times,
)
from tests.unit.test_bench_cli import two_host_lab


def event(action: str, name: str, at: float) -> str:
    return json.dumps(
        {
            "Type": "container",
            "Action": action,
            "Actor": {"ID": "abc", "Attributes": {"name": name, "image": "rayproject/ray:2.59.0-py311-cpu"}},
            "time": int(at),
            "timeNano": int(at * 1e9),
        }
    )


def test_a_downtime_starts_at_the_earliest_stop_of_a_ray_container():
    output = "\n".join(
        [
            event("die", "ray-worker", 1000.5),
            event("kill", "ray-head", 1000.25),
            event("die", "node-exporter", 999.0),  # not Ray
            event("start", "ray-head", 998.0),  # not a stop
            event("stop", "ray-head", 1001.0),
            event("die", "ray-head", 990.0).replace('"container"', '"network"'),  # not a container's
            "",
        ]
    )
    assert stop_times(output, ["ray-head", "ray-worker"]) == [1000.25, 1000.5, 1001.0]
    assert stop_times(output, ["ray_container"]) == []
    assert stop_times("", ["ray-head"]) == []


def nodes(*started: float | None) -> tuple[tuple[str, float | None], ...]:
    """ALIVE nodes at 10.0.0.1, 10.0.0.2, ... started at STARTED."""
    return tuple((f"10.0.0.{index}", at) for index, at in enumerate(started, start=1))


def test_a_downtime_ends_at_the_first_poll_with_the_new_version_and_every_node_restarted():
    since = 100.0
    samples = [
        Sample(101.0, None),  # the head does not answer
        Sample(102.0, "2.60.0", nodes(101.5, 101.6)),  # two of three nodes
        Sample(103.0, "2.59.0", nodes(101.5, 101.6, 101.7)),  # the old version
        Sample(104.0, "2.60.0", nodes(101.5, 101.6, 90.0)),  # a node that outlived the change
        Sample(105.0, "2.60.0", nodes(101.5, 101.6, None)),  # a start time not reported
        # A node restarted twice is listed twice (the first one not yet seen dead): still two nodes.
        Sample(105.5, "2.60.0", (*nodes(101.5, 101.6), ("10.0.0.2", 105.2))),
        # The old third node still listed ALIVE beside its replacement: it does not count.
        Sample(106.0, "2.60.0", (*nodes(101.5, 101.6, 104.2), ("10.0.0.3", 90.0))),
        Sample(107.0, "2.60.0", nodes(101.5, 101.6, 104.2)),
    ]
    assert back_at(samples, "2.60.0", 3, since) == 106.0
    assert back_at(samples, "2.61.0", 3, since) is None
    assert back_at(samples, "2.60.0", 3, since=106.5) is None  # every node started after 106.5: none
    # Polls from before the change never end it.
    assert back_at([Sample(99.0, "2.60.0", nodes(99.0, 99.0, 99.0))], "2.60.0", 3, since) is None


def test_a_change_that_stopped_nothing_waits_for_every_node_alive_whatever_its_version():
    samples = [
        Sample(10.0, "2.59.0", nodes(1.0, 1.0, 1.0)),
        Sample(12.0, None),
        Sample(13.0, "2.59.0", nodes(1.0, 1.0, 1.0)),
    ]
    assert settled_at(samples, 3, since=11.0) == 13.0
    assert settled_at(samples, 4, since=0.0) is None


def test_downtime_is_from_the_first_stop_to_the_first_poll_back():
    assert Change(40.0, first_stop=1000.0, back=1012.5, stops=3, seen=None).downtime_s == 12.5
    assert Change(40.0, first_stop=None, back=None, stops=0, seen=None).downtime_s is None
    assert Change(40.0, first_stop=1000.0, back=None, stops=3, seen=None).downtime_s is None


def test_a_change_without_a_downtime_says_why():
    kept = Change(25.0, None, None, 0, Sample(50.0, "2.59.0", nodes(1.0, 2.0, 3.0)))
    assert describe_no_downtime(kept, "ray up", "2.60.0", 3) == (
        "ray up: no Ray container was stopped on any host (25.0 s); "
        "then the head reported Ray 2.59.0 with 3 of 3 nodes alive"
    )
    stuck = Change(25.0, 10.0, None, 3, Sample(50.0, "2.60.0", nodes(11.0)))
    assert describe_no_downtime(stuck, "upgrade", "2.60.0", 3) == (
        f"upgrade: not Ray 2.60.0 on every node within {GIVE_UP_S:.0f} s after it returned; "
        "then the head reported Ray 2.60.0 with 1 of 3 nodes alive"
    )
    silent = Change(25.0, 10.0, None, 3, None)
    assert "the head's dashboard did not answer" in describe_no_downtime(silent, "rollback", "2.59.0", 3)


def test_only_changes_with_a_downtime_make_figures():
    changes = [
        Change(40.0, 100.0, 112.0, 3, None),
        Change(50.0, None, None, 0, None),
        Change(44.0, 10.0, 20.0, 3, None),
    ]
    figures = change_figures(changes, "upgrade")
    assert figures["upgrade_downtime"]["samples"] == [12.0, 10.0]
    assert figures["upgrade_total"]["samples"] == [40.0, 44.0]
    assert change_figures([Change(50.0, None, None, 0, None)], "rollback") == {}


def test_the_launcher_keeping_its_old_container_is_recorded_with_its_own_words():
    said = (
        "Updating cluster configuration.\n"
        "  A container with name ray_container is running image rayproject/ray:2.59.0-py311-cpu instead of "
        "rayproject/ray:2.60.0-py311-cpu (which was provided in the YAML)\n"
        "Done.\n"
    )
    assert launcher_said(said).startswith("A container with name ray_container is running image")
    outcome = edit_image_outcome(Change(31.0, None, None, 0, Sample(1.0, "2.59.0", nodes(0.5, 0.5, 0.5)), said), 3)
    assert outcome["upgraded"] is False and outcome["ray_containers_stopped"] == 0
    assert "head reported Ray 2.59.0" in outcome["why"]
    assert "instead of rayproject/ray:2.60.0-py311-cpu" in outcome["launcher_said"]


def test_the_peer_edit_changes_only_the_image_of_the_launcher_config():
    lab = two_host_lab("rdbench-upgrade-peer-0")
    before = json.loads(cluster_yaml(lab, lab.name, "rayproject/ray:2.59.0-py311-cpu"))
    after = json.loads(cluster_yaml(lab, lab.name, "rayproject/ray:2.60.0-py311-cpu"))
    assert after["docker"].pop("image") == "rayproject/ray:2.60.0-py311-cpu"
    assert before["docker"].pop("image") == "rayproject/ray:2.59.0-py311-cpu"
    assert before == after


def test_downtime_targets_are_under_30_s_and_a_partly_failed_scenario_keeps_its_figures():
    assert meets("upgrade_downtime", 29.9) == "yes"
    assert meets("rollback_downtime", 30.0) == "NO"
    figure = {"median": 12.0, "min": 11.0, "max": 13.0, "runs": 2, "unit": "s", "samples": [11.0, 13.0]}
    shown = table({"upgrade": {"figures": {"upgrade_downtime": figure}, "error": "`raydeploy rollback` is not in"}})
    assert "FAILED: `raydeploy rollback` is not in" in shown
    assert "upgrade_downtime" in shown and "< 30 s" in shown


class FakeHead(BaseHTTPRequestHandler):
    """Answers as a Ray head's dashboard does, on loopback only; requests without the token get 401."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if self.headers.get("Authorization") != "Bearer sesame":
            self.send_response(401)
            self.end_headers()
            return
        if url.path == "/api/version":
            body = {"version": "5", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "s"}
        else:
            query = parse_qs(url.query)
            assert query["detail"] == ["true"] and query["filter_values"] == ["ALIVE"]
            rows = [
                {"node_ip": "10.0.0.1", "state": "ALIVE", "start_time_ms": 1_700_000_000_500},
                {"node_ip": "10.0.0.2", "state": "ALIVE"},
            ]
            body = {"data": {"result": {"result": rows}}}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_head():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHead)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_poll_reads_the_head_version_and_each_alive_node_start_time_with_the_token(fake_head):
    sample = Probe(fake_head, "sesame").poll()
    assert sample.ray_version == "2.60.0"
    assert sample.alive == (("10.0.0.1", 1_700_000_000.5), ("10.0.0.2", None))
    assert Probe(fake_head, "wrong").poll().ray_version is None
    unanswered = Probe("http://127.0.0.1:9", None).poll()  # nothing listens there
    assert (unanswered.ray_version, unanswered.alive) == (None, ())


def test_the_probe_polls_in_a_thread_until_it_is_left(fake_head):
    with Probe(fake_head, "sesame") as probe:
        deadline = threading.Event()
        deadline.wait(1.2)
    taken = len(probe.samples)
    assert 2 <= taken <= 4
    assert all(sample.ray_version == "2.60.0" for sample in probe.samples)
    threading.Event().wait(0.6)
    assert len(probe.samples) == taken
