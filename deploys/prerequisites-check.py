"""Checkpoint 1, prerequisites-check: OS, CPUs, memory, disk, /dev/shm, ports, python, head reachable.

Changes nothing. `pyinfra INVENTORY deploys/prerequisites-check.py`
"""

from deploys.prerequisites import check_prerequisites
from deploys.topology import load_cluster, this_node

check_prerequisites(this_node(), load_cluster())
