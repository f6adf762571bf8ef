"""The reboot scenario's measure: when a restarted host's part of the cluster counts as back."""

from __future__ import annotations

from bench.day2 import rejoined
from bench.upgrade import Sample

RESTART = 1_000.0  # unix s when the host's container was restarted
HEAD, WORKER = "10.0.0.2", "10.0.0.3"


def test_a_node_of_the_restarted_host_listed_from_before_the_restart_does_not_count():
    stale = Sample(RESTART + 2, "2.60.0", ((HEAD, 900.0), (WORKER, 900.0)))
    assert not rejoined(stale, 2, WORKER, RESTART)


def test_the_restarted_hosts_new_node_with_every_other_node_alive_counts():
    back = Sample(RESTART + 20, "2.60.0", ((HEAD, 900.0), (WORKER, 900.0), (WORKER, RESTART + 15)))
    assert rejoined(back, 2, WORKER, RESTART), "the old entry beside its replacement is one address"
    assert not rejoined(back, 3, WORKER, RESTART), "a node missing is not back"


def test_a_head_that_does_not_answer_is_not_back():
    assert not rejoined(Sample(RESTART + 5, None), 2, HEAD, RESTART)
