"""Day-2 action destroy (destructive): remove raydeploy's containers, files and, with purge_data, data.

Found on each host from the host itself (deploys/teardown.py); Docker stays. Containers raydeploy
did not make are left alone. `pyinfra INVENTORY deploys/destroy.py --dry [--data purge_data=true]`
lists, per host, exactly what would go.
"""

from pyinfra import host

from deploys.connection import send_without_delay
from deploys.teardown import destroy, is_true

send_without_delay(host)
destroy(purge_data=is_true(host.data.get("purge_data", False)))
