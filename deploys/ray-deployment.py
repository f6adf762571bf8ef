"""Checkpoint 4, ray-deployment: images, Redis and the Ray head, the workers; waits for every node.

`pyinfra INVENTORY deploys/ray-deployment.py`
"""

from deploys.ray_cluster import ray_cluster
from deploys.topology import load_cluster, this_node

ray_cluster(this_node(), load_cluster())
