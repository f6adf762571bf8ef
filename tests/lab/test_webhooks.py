"""raydeploy's own events from a real `raydeploy deploy` on the lab, delivered signed to a receiver on 127.0.0.1
(the machine running raydeploy: the receiver is never on a lab host's side of the network)."""

from __future__ import annotations

import json

from raydeploy import webhooks
from tests.lab.test_wrapper import raydeploy_runner
from tests.unit import webhook_receiver

receiver = webhook_receiver.receiver  # the fixture: a real HTTP receiver on 127.0.0.1


def test_a_real_deploy_announces_its_run_and_its_approvals_signed_and_in_order(make_lab, tmp_path, receiver):
    lab = make_lab("webhooks")
    lab.up("--workers", "1")
    call = raydeploy_runner({**lab.env, "RAYDEPLOY_STATE_DIR": str(tmp_path / "state")})
    added = call(
        "webhooks", "add", receiver.url, "--allow-private", "--console-url", "http://127.0.0.1:8000", check=True
    )
    secret = added.stdout.strip().splitlines()[-1]

    deployed = call("deploy", "--auto-approve", check=True)

    types = receiver.types()  # sent before the command exited
    print(deployed.output[-600:], types)
    assert types[0] == "run.started" and types[-1] == "run.succeeded", types
    assert "approval.granted" in types  # docker-installation's plan, auto-approved
    assert not {"run.failed", "approval.requested"} & set(types)
    lab.down()  # its Ray nodes would load the machine for the rest of the session (a failure leaves it to make_lab)
    for headers, body in receiver.received:
        timestamp = headers["X-Raydeploy-Timestamp"]
        assert headers["X-Raydeploy-Signature-256"] == webhooks.signature(secret, timestamp, body)
    run_id = receiver.documents()[-1]["details"]["target"]
    assert receiver.documents()[-1]["link"] == f"http://127.0.0.1:8000/runs/{run_id}"
    log = json.loads(call("webhooks", "deliveries", "--json", check=True).stdout)
    assert {row["status"] for row in log} == {"delivered"} and len(log) == len(types)
