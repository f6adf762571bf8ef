"""The host's NVIDIA GPUs and driver as `nvidia-smi` reports them: the one probe of a GPU host.

prerequisites-check (is the driver there?), ray-deployment (how many GPUs Ray offers) and
final-validation (does Ray report them all?) all read this one fact.
"""

from __future__ import annotations

from pyinfra.api import FactBase

# Printed instead of nvidia-smi's output when the command is missing or fails: no working driver.
NO_DRIVER = "raydeploy: no working nvidia-smi:"
QUERY = "index,uuid,name,driver_version"


def parse_gpus(output: list[str]) -> dict:
    """nvidia-smi's CSV lines (index, uuid, name, driver version) as the fact's value; see NvidiaGpus."""
    if any(line.startswith(NO_DRIVER) for line in output):
        reason = " ".join(line.removeprefix(NO_DRIVER).strip() for line in output).strip()
        return {"driver": None, "gpus": [], "error": reason or "nvidia-smi failed"}
    gpus, drivers = [], set()
    for line in output:
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        index, uuid, name, driver = fields
        gpus.append({"index": index, "uuid": uuid, "name": name})
        drivers.add(driver)
    if not gpus:
        return {"driver": None, "gpus": [], "error": "nvidia-smi lists no GPU"}
    return {"driver": ", ".join(sorted(drivers)), "gpus": gpus, "error": ""}


class NvidiaGpus(FactBase):
    """
    The GPUs `nvidia-smi` lists and the driver's version; driver None (and why, in error) when
    nvidia-smi is missing, fails (no driver loaded) or lists no GPU. Never fails itself.

    .. code:: python

        {"driver": "550.54.15", "error": "",
         "gpus": [{"index": "0", "uuid": "GPU-5d1c...", "name": "NVIDIA A100-SXM4-40GB"}]}
    """

    def command(self) -> str:
        return (
            f"if ! command -v nvidia-smi >/dev/null 2>&1; then echo '{NO_DRIVER} nvidia-smi is not installed'; "
            f"elif ! out=$(nvidia-smi --query-gpu={QUERY} --format=csv,noheader 2>&1); then "
            f'echo "{NO_DRIVER} $out"; else echo "$out"; fi'
        )

    def process(self, output: list[str]) -> dict:
        return parse_gpus(output)
