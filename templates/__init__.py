"""Files rendered onto hosts (jinja2); `TEMPLATES` is this directory."""

from pathlib import Path

TEMPLATES = Path(__file__).parent
