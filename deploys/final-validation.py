"""Checkpoint 6, final-validation. `pyinfra INVENTORY deploys/final-validation.py`"""

from deploys.final_checks import final_validation
from deploys.topology import load_cluster, this_node

final_validation(this_node(), load_cluster())
