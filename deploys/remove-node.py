"""Day-2 action remove-node (destructive): drain workers through Ray, then remove them. See deploys/node_removal.py.

`pyinfra INVENTORY deploys/remove-node.py --data remove_hosts=worker-2 --data drain_timeout=300 --fail-percent 0`
"""

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from deploys.node_removal import removal_from_data, remove_nodes
from deploys.topology import load_cluster, this_node

try:
    removal = removal_from_data(host.data.dict())
except ValueError as problem:
    raise DeployError(f"remove-node: nothing was changed: {problem}") from None
remove_nodes(this_node(), load_cluster(), removal)
