"""Ray processes running on the host outside any container (a pip install's `ray start`)."""

from __future__ import annotations

from pyinfra.api import FactBase

# What a Ray node runs; matched against each process's command line.
RAY_PROCESS_MARKERS = ("gcs_server", "raylet", "ray/dashboard/dashboard.py", "ray/_private/log_monitor.py")


class BareMetalRayProcesses(FactBase):
    """
    Ray processes in the host's own PID namespace (so not in a container), as ``{pid: command line}``.

    .. code:: python

        {4211: "/usr/local/lib/python3.11/dist-packages/ray/core/src/ray/gcs/gcs_server --gcs_server_port=6379"}
    """

    default = dict

    def command(self) -> str:
        patterns = "|".join(f"*{marker}*" for marker in RAY_PROCESS_MARKERS)
        return (
            "host_ns=$(readlink /proc/1/ns/pid); "
            "for d in /proc/[0-9]*; do "
            '[ "${d#/proc/}" = "$$" ] && continue; '
            '[ "$(readlink $d/ns/pid 2>/dev/null)" = "$host_ns" ] || continue; '
            'cmd=$(tr "\\0" " " < $d/cmdline 2>/dev/null) || continue; '
            f'case "$cmd" in {patterns}) echo "${{d#/proc/}} $cmd";; esac; '
            "done"
        )

    def process(self, output: list[str]) -> dict[int, str]:
        processes = {}
        for line in output:
            pid, _, command = line.strip().partition(" ")
            # The shell running this loop names every marker in its own command line.
            if pid.isdigit() and "host_ns=" not in command:
                processes[int(pid)] = command.strip()
        return processes
