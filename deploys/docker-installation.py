"""Checkpoint 2, docker-installation: the Docker engine, daemon.json, the service enabled and running.

`pyinfra INVENTORY deploys/docker-installation.py`
"""

from deploys.docker_engine import install_docker
from deploys.topology import this_node

install_docker(this_node().settings)
