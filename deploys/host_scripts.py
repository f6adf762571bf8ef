"""Python scripts that run on a host, shipped inside the command that runs them.

A script (deploys/scripts/) and the plain-Python modules it imports (facts/*_answers.py) are
written into a fresh temporary directory on the host and run with the host's python3, all in one
command: the plan shows every line that will run, nothing is left on the host, and a changed
script changes the command.
"""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
END = "RAYDEPLOY_SCRIPT_END"


def python_script(script: str, modules: tuple[str, ...], arguments: list[str]) -> str:
    """A shell command running SCRIPT (a path below the repository) with ARGUMENTS on the host.

    + script: e.g. ``deploys/scripts/wait_ray_nodes.py``
    + modules: the modules it imports, e.g. ``("facts/ray_answers.py",)``, shipped beside it
      under the same paths so that its imports work unchanged
    + arguments: its command-line arguments
    """
    lines = ["dir=$(mktemp -d) && trap 'rm -rf \"$dir\"' EXIT"]
    for path in (*modules, script):
        text = (ROOT / path).read_text()
        if END in text:
            raise ValueError(f"{path} contains {END}, which ends the text shipped to the host")
        lines += [f'mkdir -p "$dir/{Path(path).parent}"', f"cat > \"$dir/{path}\" <<'{END}'", text.rstrip("\n"), END]
    lines.append(
        f'PYTHONPATH="$dir" python3 "$dir/{script}" {" ".join(shlex.quote(argument) for argument in arguments)}'
    )
    return "\n".join(lines)
