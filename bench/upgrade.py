"""The `upgrade` scenario: Ray 2.59.0 -> 2.60.0 on a running cluster, its downtime, and the rollback.

Ours, on each of --runs fresh labs (1 head + --workers workers) made at Ray 2.59.0 and deployed
(`raydeploy deploy --auto-approve`, not counted): `raydeploy lab up --ray-version 2.60.0` (the
inventory's ray_image changes, as an operator edits it; not counted), then `raydeploy deploy
--auto-approve` is timed (upgrade_total) while its downtime is measured (upgrade_downtime); then
`raydeploy rollback --auto-approve` the same way back to 2.59.0 (rollback_total, rollback_downtime).

Downtime is measured the same way for every change:
- start: the earliest moment a Ray container (ours: ray-head, ray-worker; the launcher's:
  ray_container) was killed, stopped or died on any lab host. Each host's own Docker engine
  streams them while the change runs: `docker events --since T0 --filter type=container
  --filter event=kill --filter event=die --filter event=stop`, over SSH, started just before the
  change (T0, so nothing falls between) and ended a second after it; each event's timeNano. The
  nested engines share this machine's clock. (Read afterwards with --since/--until instead, an
  engine answers from the last 256 events it keeps, of every kind: on the first real run the
  head's engine returned all 256 for one upgrade, so its first stop could have been dropped.)
- end: the first moment the head's dashboard, polled every 0.5 s from this machine in a thread,
  answers `GET /api/version` with the new Ray version AND `GET /api/v0/nodes` (detail, ALIVE
  only) lists as many distinct node addresses as the lab has hosts among the nodes started (their
  start_time_ms) after the start above: a node that outlived the change, or a stale entry still
  listed ALIVE beside its replacement, does not count. The moment is when both answers came back.
- A change in which no Ray container stopped, or after which the head did not report the new
  version with every node alive within GIVE_UP_S, has no downtime figure: the run says why.

Peer, on one fresh lab per run at 2.59.0 with Docker installed by our docker-installation
checkpoint (not counted): Ray's launcher (`ray up`, local provider, config as in bench/peer.py)
brings the cluster up on the mirror's rayproject/ray:2.59.0-py311-cpu (not counted); then the
issue's change: edit docker.image in its config to 2.60.0 and run `ray up` again, timed and
measured as above. Ray 2.60's launcher does not replace a running container whose image differs
from the config (DockerCommandRunner._check_if_container_restart_is_needed only logs "A container
with name ... is running image ... instead of ..."; it restarts a container only for a missing bind
mount) and restarts Ray inside the old one, so the cluster stays on 2.59.0: that run has no
downtime figure and the scenario's `peer_edit_image` says what the head reported and quotes the
launcher. What the launcher offers to change the image is `ray down` then `ray up`: measured the
same way as the peer figure (peer_down_up_downtime, peer_down_up_total).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.labs import Lab, fresh_lab
from bench.measure import PYINFRA, RAYDEPLOY, BenchError, figure, run
from bench.peer import CONTAINER, cluster_yaml, launcher_down, ray_cli, ray_up_until_alive
from bench.scenarios import WRAPPER_DEPLOY
from deploys.components import RAY_HEAD, RAY_WORKER

FROM_VERSION, TO_VERSION = "2.59.0", "2.60.0"
POLL_S = 0.5
GIVE_UP_S = 300.0
STOP_EVENTS = ("kill", "die", "stop")
OUR_CONTAINERS = (RAY_HEAD, RAY_WORKER)
ROLLBACK = [RAYDEPLOY, "rollback", "--auto-approve", "-i", "inventories/lab.py"]


def ray_image(version: str) -> str:
    return f"rayproject/ray:{version}-py311-cpu"


# ---- what is measured (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One poll of the head's dashboard: when its answers came back (unix s), the Ray version it
    reported (None: no answer), and each node it lists ALIVE: (address, start time in unix s, None
    when not reported). A node that left may stay listed ALIVE a while (with GCS fault tolerance,
    even across the head's restart): its start time tells it from the node that replaced it."""

    at: float
    ray_version: str | None
    alive: tuple[tuple[str, float | None], ...] = ()

    def addresses(self, started_since: float | None = None) -> set[str]:
        """The distinct addresses of the ALIVE nodes (only those started at or after STARTED_SINCE)."""
        return {
            address
            for address, started in self.alive
            if started_since is None or (started is not None and started >= started_since)
        }


def stop_times(events_output: str, containers: Iterable[str]) -> list[float]:
    """Unix times of the kill/die/stop events of CONTAINERS in `docker events --format '{{json .}}'` output."""
    wanted = set(containers)
    times = []
    for line in events_output.splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        name = (event.get("Actor") or {}).get("Attributes", {}).get("name")
        if event.get("Type") == "container" and event.get("Action") in STOP_EVENTS and name in wanted:
            times.append(event["timeNano"] / 1e9)
    return sorted(times)


def back_at(samples: Iterable[Sample], version: str, expected: int, since: float) -> float | None:
    """The first poll at or after SINCE that saw VERSION on the head and EXPECTED nodes (distinct
    addresses) alive that started at or after SINCE; None when none did."""
    for sample in samples:
        if sample.at >= since and sample.ray_version == version and len(sample.addresses(since)) == expected:
            return sample.at
    return None


def settled_at(samples: Iterable[Sample], expected: int, since: float) -> float | None:
    """The first poll at or after SINCE that saw EXPECTED nodes alive, whatever the version."""
    for sample in samples:
        if sample.at >= since and sample.ray_version is not None and len(sample.addresses()) == expected:
            return sample.at
    return None


def last_answer(samples: Iterable[Sample]) -> Sample | None:
    """The last poll the head answered."""
    answered = [sample for sample in samples if sample.ray_version is not None]
    return answered[-1] if answered else None


@dataclass
class Change:
    """One timed change of the cluster's Ray version, and what the probe saw around it."""

    total_s: float
    first_stop: float | None
    back: float | None
    stops: int
    seen: Sample | None
    output: str = ""

    @property
    def downtime_s(self) -> float | None:
        if self.first_stop is None or self.back is None:
            return None
        return self.back - self.first_stop


def describe_no_downtime(change: Change, what: str, version: str, expected: int) -> str:
    """Why CHANGE has no downtime figure, in one sentence."""
    seen = change.seen
    if seen is None:
        afterwards = f"the head's dashboard did not answer in the {GIVE_UP_S:.0f} s after it"
    else:
        afterwards = (
            f"then the head reported Ray {seen.ray_version} with {len(seen.addresses())} of {expected} nodes alive"
        )
    if change.first_stop is None:
        return f"{what}: no Ray container was stopped on any host ({change.total_s:.1f} s); {afterwards}"
    return f"{what}: not Ray {version} on every node within {GIVE_UP_S:.0f} s after it returned; {afterwards}"


# ---- measuring a live cluster ----------------------------------------------------------------


@dataclass
class Probe:
    """Polls a Ray head's dashboard every POLL_S in a thread; the samples in order."""

    dashboard: str
    token: str | None
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def poll(self) -> Sample:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            version = requests.get(f"{self.dashboard}/api/version", headers=headers, timeout=2).json()["ray_version"]
            rows = requests.get(
                f"{self.dashboard}/api/v0/nodes",
                params={
                    "limit": 1000,
                    "detail": "true",
                    "filter_keys": "state",
                    "filter_predicates": "=",
                    "filter_values": "ALIVE",
                },
                headers=headers,
                timeout=2,
            ).json()["data"]["result"]["result"]
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return Sample(time.time(), None)
        alive = tuple(
            (row["node_ip"], row["start_time_ms"] / 1000 if row.get("start_time_ms") else None) for row in rows
        )
        return Sample(time.time(), version, alive)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            self.samples.append(self.poll())
            self._stop.wait(max(0.0, POLL_S - (time.monotonic() - began)))

    def __enter__(self) -> Probe:
        self._thread = threading.Thread(target=self._loop, name="bench-upgrade-probe", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)


class EventWatch:
    """Streams each lab host's Docker engine events matching FILTERS (`docker events --filter` values),
    from SINCE until `stop()`: one `docker events` per host over SSH, ended by closing its standard
    input. Streamed, not read afterwards: an engine answers a later `--since` from the last 256
    events it keeps, of every kind."""

    def __init__(self, lab: Lab, filters: Iterable[str], since: float, hosts: Iterable[str] | None = None) -> None:
        self.lab = lab
        self.filters = list(filters)
        self.since = since
        self.hosts = list(hosts) if hosts is not None else lab.host_names
        self.streams: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> EventWatch:
        filters = " ".join(f"--filter {item}" for item in self.filters)
        # The shell waits for this end of the connection to close, then ends the stream.
        remote = f"docker events --since {self.since:.3f} {filters} --format '{{{{json .}}}}' & read _; kill $!"
        for host in self.hosts:
            self.streams[host] = subprocess.Popen(
                ["ssh", "-F", self.lab.status["ssh"]["config"], host, remote],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        return self

    def stop(self) -> dict[str, str]:
        """End every stream; per host, what its engine streamed (one JSON event per line)."""
        seen: dict[str, str] = {}
        failed = []
        for host, stream in self.streams.items():
            try:
                output, error = stream.communicate(timeout=30)  # closes its standard input first
            except subprocess.TimeoutExpired:
                stream.kill()
                output, error = stream.communicate()
            if stream.returncode != 0:
                failed.append(f"{host}: exit {stream.returncode}: {error.strip()[-500:]}")
            seen[host] = output
        self.streams = {}
        if failed:
            raise BenchError(f"`docker events` did not stream on lab {self.lab.name}: {'; '.join(failed)}")
        return seen

    def __exit__(self, *exc: object) -> None:
        for stream in self.streams.values():
            stream.kill()
            stream.communicate()
        self.streams = {}


class StopWatch:
    """The kill/die/stop events of CONTAINERS on each lab host (an EventWatch), from SINCE until `stop()`."""

    def __init__(self, lab: Lab, containers: Iterable[str], since: float, hosts: Iterable[str] | None = None) -> None:
        self.events = EventWatch(lab, ["type=container", *(f"event={event}" for event in STOP_EVENTS)], since, hosts)
        self.containers = list(containers)

    def __enter__(self) -> StopWatch:
        self.events.__enter__()
        return self

    def stop(self) -> list[float]:
        """End every stream; the stop times seen on any host, in order."""
        return sorted(time for output in self.events.stop().values() for time in stop_times(output, self.containers))

    def __exit__(self, *exc: object) -> None:
        self.events.__exit__(*exc)


def measure_change(
    lab: Lab, act: Callable[[], str], version: str, containers: Iterable[str], token: str | None
) -> Change:
    """Run ACT (the change; it returns its output) while polling the head; its wall time, the first
    Ray container stop on any host, and the first poll that saw VERSION on every node. When no
    container stopped, wait instead until every node is alive again (whatever its version), so
    `seen` says what the change left running."""
    expected = len(lab.host_names)
    with Probe(lab.dashboard_url, token) as probe, StopWatch(lab, containers, since=time.time()) as watch:
        started = time.monotonic()
        output = act()
        total_s = time.monotonic() - started
        ended = time.time()
        time.sleep(1)  # the last events of the change reach this machine
        stops = watch.stop()
        first_stop = stops[0] if stops else None
        back = None
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            samples = list(probe.samples)
            if first_stop is not None:
                back = back_at(samples, version, expected, first_stop)
                if back is not None:
                    break
            elif settled_at(samples, expected, ended) is not None:
                break
            time.sleep(POLL_S)
        seen = last_answer(list(probe.samples))
    return Change(total_s, first_stop, back, len(stops), seen, output)


def ray_token(lab: Lab) -> str:
    return Path(f"{lab.env['RAYDEPLOY_LAB_HOME']}/{lab.name}/secrets/ray-auth-token").read_text().strip()


def wrapper_change(lab: Lab, command: list[str]) -> Callable[[], str]:
    def act() -> str:
        completed = run(command, lab.env)
        return completed.stdout + completed.stderr

    return act


# ---- ours -----------------------------------------------------------------------------------


def rollback_missing() -> str | None:
    """Why `raydeploy rollback` cannot run in this tree, or None when it exists."""
    completed = subprocess.run([RAYDEPLOY, "rollback", "--help"], capture_output=True, text=True, check=False)
    if completed.returncode == 0:
        return None
    said = (completed.stderr or completed.stdout).strip().splitlines()
    return f"`raydeploy rollback` is not in this tree ({said[-1] if said else f'exit {completed.returncode}'})"


def ours_run(index: int, workers: int) -> dict:
    """One fresh lab at FROM_VERSION, deployed; the upgrade to TO_VERSION, then the rollback."""
    result: dict = {}
    with fresh_lab(f"rdbench-upgrade-{index}", workers, ray_version=FROM_VERSION) as lab:
        run(WRAPPER_DEPLOY, lab.env)
        token = ray_token(lab)
        run([RAYDEPLOY, "lab", "up", "--workers", str(workers), "--ray-version", TO_VERSION], lab.env)
        upgrade = measure_change(lab, wrapper_change(lab, WRAPPER_DEPLOY), TO_VERSION, OUR_CONTAINERS, token)
        result["upgrade"] = upgrade
        if upgrade.downtime_s is None:
            raise BenchError(describe_no_downtime(upgrade, "upgrade", TO_VERSION, 1 + workers))
        missing = rollback_missing()
        if missing:
            result["rollback_error"] = missing
            return result
        try:
            rollback = measure_change(lab, wrapper_change(lab, ROLLBACK), FROM_VERSION, OUR_CONTAINERS, token)
        except BenchError as error:
            result["rollback_error"] = f"rollback: {error}"
            return result
        result["rollback"] = rollback
        if rollback.downtime_s is None:
            result["rollback_error"] = describe_no_downtime(rollback, "rollback", FROM_VERSION, 1 + workers)
    return result


# ---- peer: Ray's launcher ---------------------------------------------------------------------


def ray_up(ray: str, config: Path, env: dict[str, str]) -> Callable[[], str]:
    def act() -> str:
        completed = run([ray, "up", "-y", "--no-config-cache", str(config)], env)
        return completed.stdout + completed.stderr

    return act


def ray_down_up(ray: str, config: Path, env: dict[str, str]) -> Callable[[], str]:
    def act() -> str:
        down = run([ray, "down", "-y", str(config)], env)
        up = ray_up(ray, config, env)()
        return down.stdout + down.stderr + up

    return act


def launcher_said(output: str) -> str:
    """The launcher's own line about the image it kept, if it printed one."""
    for line in output.splitlines():
        if "is running image" in line:
            return line.strip()
    return ""


def peer_run(index: int, workers: int) -> dict:
    """One fresh lab: `ray up` at FROM_VERSION (not counted), the image edited to TO_VERSION and
    `ray up` again, then `ray down` + `ray up` at TO_VERSION."""
    ray = ray_cli()
    name = f"rdbench-upgrade-peer-{index}"
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_UP_enable_autoscaler_v2": "0"}
    result: dict = {}
    with fresh_lab(name, workers, ray_version=FROM_VERSION) as lab:
        run([RAYDEPLOY, "lab", "up", "--workers", str(workers), "--ray-version", TO_VERSION], lab.env)
        run([PYINFRA, "-y", "inventories/lab.py", "deploys/docker-installation.py"], lab.env)
        work = Path(tempfile.mkdtemp(prefix=f"{name}-launcher-"))
        config = work / "cluster.yaml"
        config.write_text(cluster_yaml(lab, name, ray_image(FROM_VERSION)))
        try:
            first = ray_up_until_alive(lab, ray, config, env)
            if first["gave_up"]:
                raise BenchError(f"`ray up` at {FROM_VERSION}: {first['alive']} of {first['expected']} nodes alive")
            config.write_text(cluster_yaml(lab, name, ray_image(TO_VERSION)))  # the operator's edit
            edited = measure_change(lab, ray_up(ray, config, env), TO_VERSION, [CONTAINER], None)
            result["edit_image"] = edited
            replaced = measure_change(lab, ray_down_up(ray, config, env), TO_VERSION, [CONTAINER], None)
            result["down_up"] = replaced
        finally:
            launcher_down(ray, config, env, name, work)
    return result


def edit_image_outcome(change: Change, expected: int) -> dict:
    """What editing the image and running `ray up` again did, as the JSON records it."""
    outcome: dict = {"ray_up_s": round(change.total_s, 2), "ray_containers_stopped": change.stops}
    if change.downtime_s is not None:
        outcome["upgraded"] = True
        outcome["downtime_s"] = round(change.downtime_s, 2)
        return outcome
    outcome["upgraded"] = False
    outcome["why"] = describe_no_downtime(change, "`ray up` after editing docker.image", TO_VERSION, expected)
    outcome["launcher_said"] = launcher_said(change.output)
    return outcome


# ---- the scenario ---------------------------------------------------------------------------


def change_figures(changes: list[Change], prefix: str) -> dict:
    """PREFIX_downtime and PREFIX_total of the CHANGES that have a downtime; none when none has."""
    measured = [change for change in changes if change.downtime_s is not None]
    if not measured:
        return {}
    return {
        f"{prefix}_downtime": figure([change.downtime_s for change in measured if change.downtime_s is not None]),
        f"{prefix}_total": figure([change.total_s for change in measured]),
    }


def shown(change: Change) -> str:
    downtime = "no downtime figure" if change.downtime_s is None else f"downtime {change.downtime_s:.1f} s"
    return f"{downtime}, whole change {change.total_s:.1f} s"


def scenario_upgrade(runs: int, workers: int) -> dict:
    """Ours (upgrade, rollback) and the peer (`ray up` after an image edit; `ray down` + `ray up`).

    A part that fails is named in the result's `error` (the scenario then counts as failed) and the
    figures of the other parts are still reported."""
    errors: list[str] = []
    ours: list[dict] = []
    try:
        for index in range(runs):
            ours.append(ours_run(index, workers))
            rollback = ours[-1].get("rollback")
            print(
                f"upgrade run {index + 1}: {shown(ours[-1]['upgrade'])}; "
                f"rollback: {shown(rollback) if rollback else ours[-1]['rollback_error']}",
                flush=True,
            )
    except BenchError as error:
        errors.append(f"ours: {error}")
    errors += sorted({run["rollback_error"] for run in ours if "rollback_error" in run})

    peer: list[dict] = []
    try:
        for index in range(runs):
            peer.append(peer_run(index, workers))
            print(
                f"upgrade peer run {index + 1}: `ray up` after the image edit: {shown(peer[-1]['edit_image'])}; "
                f"`ray down` + `ray up`: {shown(peer[-1]['down_up'])}",
                flush=True,
            )
    except BenchError as error:
        errors.append(f"peer: {error}")

    figures = change_figures([run["upgrade"] for run in ours], "upgrade")
    figures |= change_figures([run["rollback"] for run in ours if "rollback" in run], "rollback")
    figures |= change_figures([run["edit_image"] for run in peer], "peer_edit_image_ray_up")
    figures |= change_figures([run["down_up"] for run in peer], "peer_down_up")
    result: dict = {
        "figures": figures,
        "peer_edit_image": [edit_image_outcome(run["edit_image"], 1 + workers) for run in peer],
        "from": FROM_VERSION,
        "to": TO_VERSION,
    }
    if errors:
        result["error"] = "; ".join(errors)
    return result
