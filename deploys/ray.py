"""Every checkpoint, in order: `pyinfra INVENTORY deploys/ray.py` (add --dry to see the plan).

prerequisites-check, docker-installation, cleanup-existing (destructive: removes only what it
recognises, see deploys/cleanup.py), ray-deployment, monitoring-deployment, final-validation.
"""

from deploys.cleanup import cleanup_existing
from deploys.docker_engine import install_docker
from deploys.final_checks import final_validation
from deploys.monitoring import monitoring_stack
from deploys.prerequisites import check_prerequisites
from deploys.ray_cluster import ray_cluster
from deploys.topology import load_cluster, this_node

node, cluster = this_node(), load_cluster()
check_prerequisites(node, cluster)
install_docker(node.settings)
cleanup_existing(node)
ray_cluster(node, cluster)
monitoring_stack(node, cluster)
final_validation(node, cluster)
