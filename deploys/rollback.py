"""Day-2 action rollback: go back to the images and settings a successful run recorded, through
ray-deployment's and monitoring-deployment's own steps (a change of Ray release is the same
cluster-wide restart as an upgrade). See deploys/rollback_target.py.

`RAYDEPLOY_STATE_DIR=STATE pyinfra INVENTORY deploys/rollback.py --data rollback_to=RUN_ID`
"""

from pyinfra import host

from deploys.monitoring import monitoring_stack
from deploys.ray_cluster import ray_cluster
from deploys.rollback_target import ROLLBACK_TO, rollback_target
from deploys.topology import load_cluster, this_node

node = this_node()
target = rollback_target(node, load_cluster(), host.data.get(ROLLBACK_TO))
ray_cluster(target.node(node.name), target)
monitoring_stack(target.node(node.name), target)
