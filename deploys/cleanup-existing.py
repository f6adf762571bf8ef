"""Checkpoint 3, cleanup-existing (destructive): remove leftovers of earlier installations.

Only what it recognises: see deploys/cleanup.py. `pyinfra INVENTORY deploys/cleanup-existing.py --dry`
lists, per host, every container and process it would remove.
"""

from deploys.cleanup import cleanup_existing
from deploys.topology import this_node

cleanup_existing(this_node())
