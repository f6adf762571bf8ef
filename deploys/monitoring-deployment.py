"""Checkpoint 5, monitoring-deployment. `pyinfra INVENTORY deploys/monitoring-deployment.py`"""

from deploys.monitoring import monitoring_stack
from deploys.topology import load_cluster, this_node

monitoring_stack(this_node(), load_cluster())
