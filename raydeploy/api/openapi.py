"""`python -m raydeploy.api.openapi`: print the OpenAPI document the app serves (the committed copy is openapi.json)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

COMMITTED = Path(__file__).with_name("openapi.json")


def document() -> dict:
    from raydeploy.api.app import create_app

    with tempfile.TemporaryDirectory() as scratch:
        return create_app("inventories/lab.py", Path(scratch)).openapi()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")
