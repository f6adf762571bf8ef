"""raydeploy: turn a handful of Linux hosts into a monitored Ray cluster, with a human in the loop."""

__version__ = "0.1.0"
