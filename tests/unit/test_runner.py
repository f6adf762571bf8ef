"""The runner's own rules, without hosts: it takes the lock, asks for an approval, runs only the
approved plan's digest, marks the approval used once, and records what happened.

The pyinfra session is replaced by a recorded one (`Session` below): plans are documents, and an
execution is what the session would have answered. The lab tests run the same runner for real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from raydeploy.approvals import Approvals
from raydeploy.checkpoints import Checkpoint
from raydeploy.plans import Execution, Plan
from raydeploy.runner import EXIT_AWAITING_APPROVAL, EXIT_FAILED, RunOptions, RunStopped, deploy, status_report
from raydeploy.state import LockHeld, StateStore
from tests.conftest import plan_of


@dataclass
class Session:
    """A recorded pyinfra session: the plan each checkpoint has, and what running one answers."""

    store: StateStore
    changes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    failing: dict[str, dict[str, str]] = field(default_factory=dict)  # checkpoint -> host -> reason
    drift: set[str] = field(default_factory=set)  # checkpoints whose plan changes once approved
    planned: list[str] = field(default_factory=list)
    executed: list[tuple[str, str | None]] = field(default_factory=list)  # checkpoint, digest bound
    locks_seen: list[str | None] = field(default_factory=list)
    extra_rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # more of what running answers
    disrupting: set[str] = field(default_factory=set)  # checkpoints whose plan restarts the cluster

    def plan(self, inventory: str, checkpoint: Checkpoint, state_dir: Path, limit=None, data=None) -> Plan:
        self.planned.append(checkpoint.name)
        plan = plan_of(checkpoint.name, fingerprint_of(inventory), self.changes.get(checkpoint.name, {}))
        if checkpoint.name in self.disrupting:
            plan.hosts["head"]["disruptions"] = [{"kind": "cluster-restart", "summary": "cluster-wide restart"}]
        return plan

    def execute(
        self, inventory, checkpoint, log, limit=None, fail_percent=None, state_dir=None, approved=None, data=None
    ):
        held = self.store.current_lock()
        self.locks_seen.append(held.run_id if held else None)
        self.executed.append((checkpoint.name, approved.digest if approved else None))
        if approved is not None and checkpoint.name in self.drift:
            found = plan_of(checkpoint.name, approved.fingerprint, {"head": ["Something else"]})
            return Execution(False, 0, [], [], refused=found)
        log(f"--> {checkpoint.name}")
        reasons = self.failing.get(checkpoint.name, {})
        rows = [("head", f"{checkpoint.name} op", "failed" if "head" in reasons else "changed", "")]
        rows += [("worker-1", f"{checkpoint.name} op", "failed" if "worker-1" in reasons else "changed", "")]
        rows += self.extra_rows
        changed = sum(row[2] == "changed" for row in rows)
        return Execution(not reasons, changed, rows, sorted(reasons), dict(reasons))


def fingerprint_of(inventory: str) -> str:
    from raydeploy.plans import fingerprint

    return fingerprint(inventory)


@pytest.fixture
def inventory(tmp_path) -> str:
    path = tmp_path / "inventory.py"
    path.write_text('head = ["head"]\nworkers = ["worker-1"]\n')
    return str(path)


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(tmp_path / "state")


@pytest.fixture
def session(store) -> Session:
    return Session(store, changes={"docker-installation": {"head": ["Install Docker"], "worker-1": ["Install Docker"]}})


def options(inventory, store, session, checkpoints, **extra) -> RunOptions:
    said: list[str] = []
    return RunOptions(
        inventory=inventory,
        store=store,
        checkpoints=checkpoints,
        requested_by="alice",
        command="raydeploy deploy",
        echo=said.append,
        plan_with=session.plan,
        execute_with=session.execute,
        **extra,
    )


def events(store: StateStore) -> list[str]:
    return [event.event for event in store.audit.events()]


def test_without_an_approval_the_checkpoint_waits_and_nothing_runs(inventory, store, session):
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["docker-installation"]))
    assert stopped.value.exit_code == EXIT_AWAITING_APPROVAL
    assert "docker-installation needs an approval" in stopped.value.message
    assert "raydeploy approve docker-installation" in stopped.value.message
    assert session.planned == ["docker-installation"] and session.executed == []
    assert "approval requested" in events(store)
    assert store.last_run()["status"] == "awaiting-approval"


def test_an_approval_runs_exactly_its_plan_once_and_is_marked_used(inventory, store, session):
    approvals = Approvals(store)
    plan = session.plan(inventory, _checkpoint("docker-installation"), store.directory)
    approval = approvals.grant(plan, approved_by="bob", reason="change 42")

    run_id = deploy(options(inventory, store, session, ["docker-installation"]))

    assert session.executed == [("docker-installation", plan.digest)]  # bound to the approved digest
    used = approvals.get(approval["id"])
    assert (used["status"], used["used_by_run"]) == ("used", run_id)
    assert "approval used" in events(store)
    with pytest.raises(RunStopped) as again:  # the same plan once more: the used approval does not count
        deploy(options(inventory, store, session, ["docker-installation"]))
    assert again.value.exit_code == EXIT_AWAITING_APPROVAL
    assert len(session.executed) == 1


def test_an_approval_of_another_plan_does_not_count(inventory, store, session):
    other = plan_of("docker-installation", fingerprint_of(inventory), {"head": ["Install Docker"]})
    approval = Approvals(store).grant(other, approved_by="bob", reason="only the head")
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["docker-installation"]))
    assert stopped.value.exit_code == EXIT_AWAITING_APPROVAL
    assert f"approval {approval['id']} was given for plan {other.digest}" in stopped.value.message
    assert session.executed == []
    assert Approvals(store).get(approval["id"])["status"] == "valid"


def test_a_plan_that_changed_after_its_approval_runs_nothing_and_says_what_changed(inventory, store, session):
    session.drift.add("docker-installation")
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["docker-installation"], auto_approve=True))
    assert stopped.value.exit_code == EXIT_AWAITING_APPROVAL
    assert "the plan changed after it was approved" in stopped.value.message
    assert "head: +Something else" in stopped.value.message
    assert store.operations(store.last_run()["id"]) == []


def test_the_run_holds_the_lock_while_it_runs_and_gives_it_back(inventory, store, session):
    run_id = deploy(options(inventory, store, session, ["prerequisites-check", "ray-deployment"]))
    assert session.locks_seen == [run_id, run_id]
    assert store.current_lock() is None
    assert store.acquire("next", "bob").run_id == "next"


def test_a_run_does_not_start_while_another_holds_the_lock(inventory, store, session):
    lock = store.acquire("someone-else", "bob")
    try:
        with pytest.raises(LockHeld, match="someone-else holds the lock"):
            deploy(options(inventory, store, session, ["prerequisites-check"]))
    finally:
        store.release(lock)
    assert session.planned == [] and session.executed == []
    assert store.last_run() is None


def test_a_failed_checkpoint_names_its_hosts_and_the_resume_command(inventory, store, session):
    session.failing["ray-deployment"] = {"worker-1": "Ray did not start"}
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["ray-deployment", "monitoring-deployment"]))
    message = stopped.value.message
    assert stopped.value.exit_code == EXIT_FAILED
    assert "ray-deployment failed on worker-1" in message and "Ray did not start" in message
    assert "the other hosts (head) finished it" in message
    assert f"resume: raydeploy deploy -i {inventory} --start-from ray-deployment --limit worker-1" in message
    assert [name for name, _ in session.executed] == ["ray-deployment"]  # the next checkpoint never ran
    run = store.last_run()
    assert (run["status"], run["failed_checkpoint"], json.loads(run["failed_hosts"])) == (
        "failed",
        "ray-deployment",
        ["worker-1"],
    )
    assert store.current_lock() is None


def test_auto_approve_approves_as_the_requester_and_says_so_in_the_audit(inventory, store, session):
    deploy(options(inventory, store, session, ["docker-installation"], auto_approve=True))
    granted = next(e for e in store.audit.events() if e.event == "approval granted")
    used = next(e for e in store.audit.events() if e.event == "approval used")
    assert (granted.details["approved_by"], granted.details["source"]) == ("alice", "auto-approve")
    assert used.details["self_approval"] is True


def test_auto_approve_never_approves_a_destructive_plan_under_separation_of_duties(inventory, store, session):
    session.changes["cleanup-existing"] = {"worker-1": ["Remove a leftover container"]}
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["cleanup-existing"], auto_approve=True, separation_of_duties=True))
    assert stopped.value.exit_code == EXIT_AWAITING_APPROVAL
    assert "separation of duties is on" in stopped.value.message
    assert session.executed == [] and "approval granted" not in events(store)


def test_a_plan_that_changes_nothing_needs_no_approval(inventory, store, session):
    session.changes["docker-installation"] = {}
    deploy(options(inventory, store, session, ["docker-installation"]))
    assert session.executed == [("docker-installation", Plan("docker-installation", "", {"hosts": {}}).digest)]
    assert "approval requested" not in events(store)


def _checkpoint(name: str) -> Checkpoint:
    from raydeploy.checkpoints import get

    return get(name)


def test_an_action_that_waits_for_approval_prints_the_approve_command_with_its_arguments(inventory, store, session):
    session.changes["destroy"] = {"head": ["Remove ray-head"]}
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["destroy"], data={"purge_data": "true", "reason": "end of life"}))
    assert stopped.value.exit_code == EXIT_AWAITING_APPROVAL
    assert (
        f"raydeploy approve destroy -i {inventory} --by YOUR_NAME --reason WHY --with purge_data=true "
        "--with 'reason=end of life' --acknowledge-risks" in stopped.value.message
    )


def test_a_removal_records_its_hosts_as_removed_and_a_failed_one_says_to_run_the_same_command_again(
    inventory, store, session
):
    data = {"remove_hosts": "worker-1", "drain_timeout": "60", "remove_on_drain_timeout": "no"}
    session.changes["remove-node"] = {"worker-1": ["Drain the Ray node"]}
    session.failing["remove-node"] = {"worker-1": "drain timed out after 60 s"}
    command = "raydeploy remove-node worker-1 --drain-timeout 1m"
    with pytest.raises(RunStopped) as stopped:
        deploy(
            replace(options(inventory, store, session, ["remove-node"], data=data, auto_approve=True), command=command)
        )
    assert f"run the same remove-node again to finish it.\nresume: {command}" in stopped.value.message
    assert "--start-from" not in stopped.value.message and store.hosts() == []
    assert status_report(store, inventory)["resume"] == command
    session.failing.clear()
    deploy(options(inventory, store, session, ["remove-node"], data=data, auto_approve=True))
    assert [(row["name"], row["status"]) for row in store.hosts()] == [("worker-1", "removed")]
    assert "hosts removed" in events(store)


@pytest.mark.parametrize(("typed", "approved"), [("prod-ray", True), ("destroy", False), ("", False)])
def test_destroy_at_a_terminal_is_approved_only_by_the_clusters_name_typed_back(
    inventory, store, session, monkeypatch, typed, approved
):
    session.changes["destroy"] = {"head": ["Remove raydeploy's containers"]}
    monkeypatch.setattr("click.prompt", lambda *_args, **_kwargs: typed)
    run = options(inventory, store, session, ["destroy"], interactive=True, typed_confirmation="prod-ray")
    if approved:
        deploy(run)
        assert [name for name, _ in session.executed] == ["destroy"]
        return
    with pytest.raises(RunStopped):
        deploy(run)
    assert session.executed == []
    assert "plan rejected" in events(store)


def test_an_action_that_failed_on_some_hosts_says_to_run_it_again_not_to_resume_a_deploy(inventory, store, session):
    session.changes["destroy"] = {"head": ["Remove raydeploy's containers"]}
    session.failing["destroy"] = {"worker-1": "could not connect"}
    run = options(
        inventory, store, session, ["destroy"], auto_approve=True, rerun_command="raydeploy destroy -i inv --purge-data"
    )
    with pytest.raises(RunStopped) as stopped:
        deploy(run)
    assert stopped.value.exit_code == EXIT_FAILED
    assert "destroy failed on worker-1" in stopped.value.message
    assert "resume: raydeploy destroy -i inv --purge-data" in stopped.value.message
    assert "the other hosts (head) finished it; fix what is named above" in stopped.value.message
    assert "--start-from" not in stopped.value.message and "next checkpoint" not in stopped.value.message


def test_a_drain_that_cut_off_work_is_said_in_the_runs_log_and_audited(inventory, store, session):
    data = {"remove_hosts": "worker-1", "drain_timeout": "10", "remove_on_drain_timeout": "yes"}
    session.changes["remove-node"] = {"worker-1": ["Drain the Ray node"]}
    report = '{"node": "10.1.0.3", "drained": false, "cut_off": ["actor Keeper 1f2e"]}'
    session.extra_rows = [("worker-1", "Remove nodes | Drain the Ray node", "changed", f"timed out\n{report}")]
    said: list[str] = []
    run = replace(options(inventory, store, session, ["remove-node"], data=data, auto_approve=True), echo=said.append)
    run_id = deploy(run)
    told = "worker-1: drain timed out; removed anyway (the approval allowed it), cut off: actor Keeper 1f2e"
    assert told in said and told in store.log_path(run_id).read_text()
    cut = [event for event in store.audit.events() if event.event == "drain cut off work"]
    assert len(cut) == 1 and cut[0].target == "worker-1" and cut[0].details["cut_off"] == ["actor Keeper 1f2e"]


def test_a_ray_deployment_that_restarts_the_cluster_waits_for_an_approval_and_a_plain_one_does_not(
    inventory, store, session
):
    session.changes["ray-deployment"] = {"head": ["Ray head container"]}
    assert deploy(options(inventory, store, session, ["ray-deployment"]))
    assert session.planned == ["ray-deployment"] and session.executed == [("ray-deployment", None)]

    session.disrupting.add("ray-deployment")
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["ray-deployment"]))
    assert stopped.value.exit_code == EXIT_AWAITING_APPROVAL and len(session.executed) == 1
    assert "raydeploy approve ray-deployment" in stopped.value.message
    assert "--acknowledge-risks" in stopped.value.message
    plan = session.plan(inventory, Checkpoint("ray-deployment", "", False, False, may_disrupt=True), store.directory)
    Approvals(store).grant(plan, "bob", "CHG-7", acknowledge_risks=True)
    deploy(options(inventory, store, session, ["ray-deployment"]))
    assert session.executed[-1] == ("ray-deployment", plan.digest), "the run is bound to the approved plan"


def use_image(inventory: str, image: str) -> None:
    """INVENTORY's head and worker run IMAGE."""
    settings = f'{{"ray_image": "{image}"}}'
    Path(inventory).write_text(f'head = [("head", {settings})]\nworkers = [("worker-1", {settings})]\n')


def good_run_then_a_new_release(inventory, store, session) -> str:
    """A successful ray-deployment (its spec recorded), then an inventory on a newer Ray release whose
    rollback the session plans as a cluster-wide restart; the good run's id."""
    session.changes["ray-deployment"] = {"head": ["Ray head container"]}
    good = deploy(options(inventory, store, session, ["ray-deployment"]))
    use_image(inventory, "rayproject/ray:2.61.0-py311-cpu")
    session.changes["rollback"] = {"head": ["Ray head container"]}
    session.disrupting.add("rollback")  # back to another Ray release: the flag approves it
    return good


def test_a_failure_after_a_change_rolls_back_to_the_last_recorded_spec_by_itself(inventory, store, session):
    good = good_run_then_a_new_release(inventory, store, session)
    assert (store.directory / "specs" / f"{good}.json").is_file()
    session.failing["ray-deployment"] = {"head": "nodes never joined"}
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["ray-deployment"], rollback_on_failure=True))
    assert stopped.value.exit_code == EXIT_FAILED
    # final-validation's own checks need a cluster (tests/lab/test_upgrade.py sees "(validated)"); here they fail.
    assert f"rolled back to run {good}'s spec (but then final-validation failed)" in stopped.value.message
    assert [name for name, _ in session.executed[-3:]] == ["ray-deployment", "rollback", "final-validation"]
    trail = events(store)
    assert trail.index("rollback started") < trail.index("run rolled back") < len(trail) - 1
    approval = store.approvals("rollback")[0]
    assert approval["reason"] == "--rollback-on-failure (ray-deployment failed)"


def test_without_the_flag_or_a_change_nothing_is_rolled_back(inventory, store, session):
    session.failing["ray-deployment"] = {"head": "nodes never joined"}
    session.changes["ray-deployment"] = {"head": ["Ray head container"]}
    with pytest.raises(RunStopped):
        deploy(options(inventory, store, session, ["ray-deployment"]))
    assert "rollback" not in [name for name, _ in session.executed]


def test_a_failure_while_deploying_the_last_good_spec_is_not_rolled_back_to_an_older_one(inventory, store, session):
    session.changes["ray-deployment"] = {"head": ["Ray head container"]}
    use_image(inventory, "rayproject/ray:2.59.0-py311-cpu")
    deploy(options(inventory, store, session, ["ray-deployment"]))
    Path(inventory).write_text('head = ["head"]\nworkers = ["worker-1"]\n')
    good = deploy(options(inventory, store, session, ["ray-deployment"]))
    session.failing["ray-deployment"] = {"head": "a worker's container was removed by hand and never joined"}
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["ray-deployment"], rollback_on_failure=True))
    assert "rollback" not in [name for name, _ in session.executed], "the older spec is not gone back to"
    assert f"not rolled back: the last good spec, run {good}'s, is the one this run was deploying" in (
        stopped.value.message
    )
    assert "rollback started" not in events(store)


def test_the_last_good_spec_is_the_newest_that_reads_back_whole(inventory, store, session):
    from raydeploy.converged import last_good, rollback_candidate

    session.changes["ray-deployment"] = {"head": ["Ray head container"]}
    use_image(inventory, "rayproject/ray:2.59.0-py311-cpu")
    first = deploy(options(inventory, store, session, ["ray-deployment"]))
    Path(inventory).write_text('head = ["head"]\nworkers = ["worker-1"]\n')
    second = deploy(options(inventory, store, session, ["ray-deployment"]))
    state_dir = str(store.directory)
    assert last_good(state_dir)[0] == second
    assert rollback_candidate(inventory, state_dir) == first, "by hand: the newest spec unlike the inventory's"
    (store.directory / "specs" / f"{second}.json").write_text("{}")
    assert last_good(state_dir)[0] == first, "an altered record is never gone back to"


def test_a_run_limited_to_some_hosts_records_no_spec(inventory, store, session):
    session.changes["ray-deployment"] = {"worker-1": ["Ray worker container"]}
    limited = deploy(options(inventory, store, session, ["ray-deployment"], limit=["worker-1"]))
    assert not (store.directory / "specs" / f"{limited}.json").exists(), "head was never brought to that spec"
    whole = deploy(options(inventory, store, session, ["ray-deployment"]))
    assert (store.directory / "specs" / f"{whole}.json").is_file()


def test_a_failed_final_validation_after_a_change_rolls_back_too(inventory, store, session):
    good = good_run_then_a_new_release(inventory, store, session)
    session.failing["final-validation"] = {"head": "the smoke job did not run on worker-1"}
    with pytest.raises(RunStopped) as stopped:
        deploy(options(inventory, store, session, ["ray-deployment", "final-validation"], rollback_on_failure=True))
    assert f"rolled back to run {good}'s spec" in stopped.value.message
    assert stopped.value.message.startswith("final-validation failed on head"), stopped.value.message
    approval = store.approvals("rollback")[0]
    assert approval["reason"] == "--rollback-on-failure (final-validation failed)"


def destroy_run(inventory, store, session, data: dict[str, str], **extra) -> RunOptions:
    """The options `raydeploy destroy` builds (raydeploy/destroy.py), with the recorded session."""
    from raydeploy.destroy import destroy_options

    said: list[str] = []
    session.changes["destroy"] = {"head": ["Remove raydeploy's containers"]}
    return destroy_options(
        inventory,
        store,
        "alice",
        "raydeploy destroy",
        data,
        echo=said.append,
        plan_with=session.plan,
        execute_with=session.execute,
        **extra,
    )


@pytest.fixture
def secrets_dir(store) -> Path:
    """The control host's generated secrets, where the deploys make them (deploys/credentials.py)."""
    from deploys.credentials import secret

    secret(str(store.directory), "redis-password")
    secret(str(store.directory), "ray-auth-token")
    return store.directory / "secrets"


def test_forget_secrets_removes_the_generated_secrets_after_a_destroy_that_succeeded_on_every_host(
    inventory, store, session, secrets_dir
):
    from raydeploy.destroy import run_destroy

    run_destroy(destroy_run(inventory, store, session, {"forget_secrets": "true"}, auto_approve=True))
    assert not secrets_dir.exists()
    (forgotten,) = [event for event in store.audit.events() if event.event == "secrets forgotten"]
    assert forgotten.details["secrets"] == ["ray-auth-token", "redis-password"]


def test_forget_secrets_keeps_the_secrets_the_operator_put_there(inventory, store, session, secrets_dir):
    from raydeploy.destroy import run_destroy

    (secrets_dir / "alert-slack-url").write_text("https://hooks.slack.com/services/X\n")
    run_destroy(destroy_run(inventory, store, session, {"forget_secrets": "true"}, auto_approve=True))
    assert sorted(path.name for path in secrets_dir.iterdir()) == ["alert-slack-url"], "no deploy makes it again"


def test_without_forget_secrets_a_destroy_keeps_the_generated_secrets(inventory, store, session, secrets_dir):
    from raydeploy.destroy import run_destroy

    run_destroy(destroy_run(inventory, store, session, {}, auto_approve=True))
    assert sorted(path.name for path in secrets_dir.iterdir()) == ["ray-auth-token", "redis-password"]
    assert "secrets forgotten" not in events(store)


def test_a_destroy_that_missed_a_host_keeps_the_secrets_and_says_so_even_with_forget_secrets(
    inventory, store, session, secrets_dir
):
    from raydeploy.destroy import run_destroy

    session.failing["destroy"] = {"worker-1": "could not connect"}
    with pytest.raises(RunStopped) as stopped:
        run_destroy(destroy_run(inventory, store, session, {"forget_secrets": "true"}, auto_approve=True))
    assert sorted(path.name for path in secrets_dir.iterdir()) == ["ray-auth-token", "redis-password"]
    assert f"the secrets in {secrets_dir} are kept" in stopped.value.message
    assert f"resume: raydeploy destroy -i {inventory} --forget-secrets" in stopped.value.message
    assert "secrets forgotten" not in events(store)


@pytest.mark.parametrize(("typed", "approved"), [("prod-ray", True), ("ray", False), ("destroy", False)])
def test_destroy_at_a_terminal_asks_for_the_inventorys_cluster_name(
    tmp_path, store, session, monkeypatch, typed, approved
):
    from raydeploy.destroy import run_destroy

    inventory = tmp_path / "named.py"
    inventory.write_text('head = [("head", {"cluster_name": "prod-ray"})]\nworkers = ["worker-1"]\n')
    asked: list[str] = []
    monkeypatch.setattr("click.prompt", lambda text, **_kwargs: asked.append(text) or typed)
    run = destroy_run(str(inventory), store, session, {}, interactive=True)
    if approved:
        run_destroy(run)
        assert [name for name, _ in session.executed] == ["destroy"]
    else:
        with pytest.raises(RunStopped):
            run_destroy(run)
        assert session.executed == [] and "plan rejected" in events(store)
    assert len(asked) == 1 and "Type the cluster's name (prod-ray)" in asked[0]


def test_destroyed_hosts_are_recorded_so_status_does_not_send_a_host_that_left_the_inventory_to_remove_node(
    inventory, store, session
):
    from raydeploy.destroy import run_destroy

    deploy(options(inventory, store, session, ["ray-deployment"]))
    session.failing["destroy"] = {"worker-1": "could not connect"}
    with pytest.raises(RunStopped):
        run_destroy(destroy_run(inventory, store, session, {}, auto_approve=True))
    assert {row["name"]: row["status"] for row in store.hosts()} == {"head": "destroyed", "worker-1": "deployed"}
    Path(inventory).write_text('head = ["head-2"]\nworkers = []\n')
    notices = status_report(store, inventory)["hosts"]
    assert len(notices) == 1 and notices[0].startswith("worker-1 was deployed"), "the unreachable host still runs"
    assert "still run there" in notices[0] and "raydeploy remove-node worker-1" in notices[0]

    Path(inventory).write_text('head = ["head"]\nworkers = ["worker-1"]\n')
    session.failing.clear()
    run_destroy(destroy_run(inventory, store, session, {}, auto_approve=True))
    assert {row["name"]: row["status"] for row in store.hosts()} == {"head": "destroyed", "worker-1": "destroyed"}
    Path(inventory).write_text('head = ["head-2"]\nworkers = []\n')
    assert status_report(store, inventory)["hosts"] == []
    assert "hosts destroyed" in events(store)
