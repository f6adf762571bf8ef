"""Webhooks for raydeploy's own events, for real: the real state database, the real CLI (CliRunner), the real
runner with a recorded pyinfra session, and a real HTTP receiver on 127.0.0.1 (tests/unit/webhook_receiver.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import stat
import threading
import time
from http.server import HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from raydeploy import webhook_delivery, webhook_outbox, webhook_urls, webhooks
from raydeploy.approvals import Approvals
from raydeploy.cli import main
from raydeploy.runner import RunStopped, deploy
from raydeploy.state import StateStore
from raydeploy.webhook_urls import UrlRefused, checked
from tests.conftest import REPO
from tests.unit import webhook_receiver
from tests.unit.test_runner import Session, _checkpoint, options

receiver = webhook_receiver.receiver  # the fixture: a real HTTP receiver on 127.0.0.1


@pytest.fixture
def state(tmp_path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def inventory(tmp_path) -> str:
    path = tmp_path / "inventory.py"
    path.write_text('head = ["head"]\nworkers = ["worker-1"]\n')
    return str(path)


def cli(state: Path, *args: str, code: int = 0):
    result = CliRunner().invoke(main, [*args, "--state-dir", str(state)])
    assert result.exit_code == code, result.output
    return result


def add_endpoint(state: Path, url: str, *extra: str) -> tuple[str, str]:
    """Add an endpoint through the CLI; its id and the secret printed once."""
    result = cli(state, "webhooks", "add", url, "--allow-private", *extra)
    secret = result.stdout.strip().splitlines()[-1]
    endpoint_id = re.search(r"webhook ([0-9a-f]{12})", result.output)[1]
    return endpoint_id, secret


def expected_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    signed = headers["X-Raydeploy-Timestamp"].encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def statuses(store: StateStore) -> list[tuple[str, str, int]]:
    return [(row["type"], row["status"], row["attempts"]) for row in reversed(webhook_delivery.deliveries(store))]


# What is announced, and the outbox ---------------------------------------------------------------


def test_runs_and_approvals_reach_the_receiver_signed_in_the_order_they_happened(inventory, state, receiver):
    endpoint_id, secret = add_endpoint(state, receiver.url, "--console-url", "https://console.example.com")
    store = StateStore(state)
    session = Session(store, changes={"docker-installation": {"head": ["Install Docker"]}})
    with pytest.raises(RunStopped):  # no approval: the run waits
        deploy(options(inventory, store, session, ["docker-installation"]))
    plan = session.plan(inventory, _checkpoint("docker-installation"), store.directory)
    Approvals(store).grant(plan, approved_by="bob", reason="CHG-1")
    run_id = deploy(options(inventory, store, session, ["docker-installation"]))
    webhook_delivery.stop_all()

    receiver.wait_for(5)
    assert receiver.types() == [
        "run.started",
        "approval.requested",
        "approval.granted",
        "run.started",
        "run.succeeded",
    ]
    for headers, body in receiver.received:
        assert headers["X-Raydeploy-Signature-256"] == expected_signature(secret, headers, body)
    last = receiver.documents()[-1]
    assert last["link"] == f"https://console.example.com/runs/{run_id}" and last["who"] == "alice"
    assert receiver.documents()[1]["link"] == "https://console.example.com/approvals/docker-installation"
    assert set(last) == {"id", "type", "time", "cluster", "who", "link", "details"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", last["time"])
    assert statuses(store)[-1] == ("run.succeeded", "delivered", 1)
    assert endpoint_id in {row["endpoint_id"] for row in webhook_delivery.deliveries(store)}


def test_a_failed_run_an_expired_approval_and_a_broken_lock_are_announced(inventory, state, receiver):
    add_endpoint(state, receiver.url)
    store = StateStore(state)
    session = Session(
        store, changes={"ray-deployment": {"head": ["Ray head"]}}, failing={"ray-deployment": {"head": "x"}}
    )
    with pytest.raises(RunStopped):
        deploy(options(inventory, store, session, ["ray-deployment"]))
    plan = session.plan(inventory, _checkpoint("docker-installation"), store.directory)
    approval = Approvals(store).grant(plan, approved_by="bob", reason="CHG-2")
    store.db.execute("UPDATE approvals SET expires_at='2000-01-01T00:00:00.000000Z' WHERE id=?", (approval["id"],))
    Approvals(store).expire()
    (state / "run.lock").write_text(
        json.dumps({"lock_id": "l1", "run_id": "r-dead", "pid": 1, "hostname": "h", "started_at": "t"})
    )
    store.release(store.acquire("r-next", "carol"))
    webhook_delivery.stop_all()

    receiver.wait_for(5)
    assert receiver.types() == ["run.started", "run.failed", "approval.granted", "approval.expired", "lock.broken"]
    assert receiver.documents()[-1]["who"] == "carol"


def test_an_event_whose_transaction_rolls_back_queues_nothing(state, receiver):
    add_endpoint(state, receiver.url)
    store = StateStore(state)
    with pytest.raises(RuntimeError), store.transaction():
        store.audit.append("alice", "run started", "r1")
        raise RuntimeError("the state change failed")
    store.audit.append("alice", "checkpoint started", "docker-installation")  # not a webhook event
    assert store.db.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0
    with store.transaction():
        store.audit.append("alice", "run started", "r2")
    assert [row["type"] for row in webhook_delivery.deliveries(store)] == ["run.started"]


def test_an_endpoint_hears_only_the_events_it_asked_for(state, receiver):
    add_endpoint(state, receiver.url, "--event", "run.failed")
    store = StateStore(state)
    store.audit.append("alice", "run started", "r1")
    store.audit.append("alice", "run finished", "r1", status="succeeded")
    store.audit.append("alice", "run finished", "r2", status="failed")
    store.audit.append("alice", "run finished", "r3", status="awaiting-approval")
    assert [row["type"] for row in webhook_delivery.deliveries(store)] == ["run.failed"]


# Order, faults and retries ----------------------------------------------------------------------


def test_events_made_while_the_receiver_is_down_are_all_delivered_in_order_once_it_is_back(state, receiver):
    add_endpoint(state, receiver.url)
    receiver.stop()
    store = StateStore(state)
    for number in range(5):
        store.audit.append("alice", "run started", f"run-{number}")
    webhook_delivery.stop_all()  # the process's deliverer tried, and failed
    cli(state, "webhooks", "deliver", code=1)
    log = cli(state, "webhooks", "deliveries").stdout
    assert "no answer" in log and "next try" in log

    receiver.start()
    cli(state, "webhooks", "deliver", "--now")
    assert [document["details"]["target"] for document in receiver.documents()] == [f"run-{n}" for n in range(5)]
    assert all(status == "delivered" for _type, status, _attempts in statuses(store))
    assert statuses(store)[0][2] >= 2  # the first was tried while the receiver was down


def test_a_failing_delivery_holds_back_the_later_ones_of_its_endpoint(state, receiver):
    receiver.answer = "500"
    add_endpoint(state, receiver.url)
    store = StateStore(state)
    store.audit.append("alice", "run started", "r1")
    store.audit.append("alice", "run finished", "r1", status="succeeded")
    webhook_delivery.stop_all()
    assert statuses(store) == [("run.started", "pending", 1), ("run.succeeded", "pending", 0)]
    assert receiver.types() == ["run.started"]
    row = webhook_delivery.deliveries(store)[-1]
    assert (row["last_code"], row["last_error"]) == (500, "answered 500 Internal Server Error")
    assert row["next_attempt_at"] > row["last_attempt_at"]


def test_a_redirect_is_not_followed_and_counts_as_a_failure(state, receiver):
    receiver.answer = "redirect"
    add_endpoint(state, receiver.url)
    store = StateStore(state)
    store.audit.append("alice", "run started", "r1")
    webhook_delivery.stop_all()
    assert len(receiver.received) == 1 and not receiver.redirected
    row = webhook_delivery.deliveries(store)[0]
    assert (row["status"], row["last_code"]) == ("pending", 302)
    assert "redirect to '/elsewhere' not followed" in row["last_error"]


def test_a_receiver_that_does_not_answer_in_time_is_a_failure_said_as_such(state, receiver, monkeypatch):
    receiver.answer, receiver.slow_s = "slow", 3
    add_endpoint(state, receiver.url)
    monkeypatch.setattr(webhook_outbox, "QUEUED_LISTENERS", [])  # queued by a process that does not send
    StateStore(state).audit.append("alice", "run started", "r1")
    started = time.monotonic()
    result = cli(state, "webhooks", "deliver", "--now", "--timeout", "0.5", code=1)
    assert time.monotonic() - started < 10  # the 3 s answer was not waited for (nor delivered: exit 1)
    assert "timed out" in result.output


def test_a_delivery_failing_for_a_day_is_abandoned_and_the_next_one_goes(state, receiver):
    add_endpoint(state, receiver.url)
    store = StateStore(state)
    receiver.answer = "500"
    store.audit.append("alice", "run started", "r1")
    store.audit.append("alice", "run finished", "r1", status="failed")
    webhook_delivery.stop_all()
    # The first was queued a day ago and is due again: its next failure is its last.
    store.db.execute("UPDATE webhook_deliveries SET created_at='2000-01-01T00:00:00.000000Z' WHERE seq=1")
    store.db.execute("UPDATE webhook_deliveries SET next_attempt_at='2000-01-01T00:00:00.000000Z'")
    webhook_delivery.drain(store)
    assert statuses(store)[0][:2] == ("run.started", "abandoned")
    assert statuses(store)[1][:2] == ("run.failed", "pending")


def test_retries_back_off_exponentially_up_to_an_hour():
    assert [webhook_delivery.retry_delay_s(n) for n in (1, 2, 3, 4, 12, 13, 40)] == [2, 4, 8, 16, 3600, 3600, 3600]


# The signature, and the README's receiver -----------------------------------------------------------


def readme_receiver() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("<!-- webhook-receiver-example -->\n```python\n", 1)[1].split("```", 1)[0]


def test_the_readmes_receiver_verifies_a_real_delivery_and_refuses_a_tampered_one(state, monkeypatch):
    seen: list[str] = []
    namespace: dict = {"__name__": "readme_receiver", "print": lambda *words: seen.append(" ".join(map(str, words)))}
    with socket.socket() as probe:  # a free port for the README's receiver, started once the secret is known
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint_id, secret = add_endpoint(state, f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("RAYDEPLOY_WEBHOOK_SECRET", secret)
    exec(compile(readme_receiver(), "README.md", "exec"), namespace)
    server = HTTPServer(("127.0.0.1", port), namespace["Receiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cli(state, "webhooks", "test", endpoint_id)  # exit 0: the README's receiver answered 204
        assert seen and "webhook.test" in seen[0]
        body = b'{"type": "run.succeeded"}'
        timestamp = str(int(time.time()))
        good = {
            "X-Raydeploy-Timestamp": timestamp,
            "X-Raydeploy-Signature-256": webhooks.signature(secret, timestamp, body),
        }
        assert namespace["verify"](good, body)
        assert not namespace["verify"](good, body.replace(b"succeeded", b"failed"))  # a tampered body
        assert not namespace["verify"]({**good, "X-Raydeploy-Timestamp": str(int(timestamp) + 1)}, body)
        old = str(int(time.time()) - 3600)  # a replay of an hour-old delivery, correctly signed
        assert not namespace["verify"](
            {"X-Raydeploy-Timestamp": old, "X-Raydeploy-Signature-256": webhooks.signature(secret, old, body)}, body
        )
        assert not namespace["verify"](
            {**good, "X-Raydeploy-Signature-256": webhooks.signature("other", timestamp, body)}, body
        )
    finally:
        server.shutdown()
        server.server_close()


def test_the_signature_covers_the_timestamp_and_the_raw_body():
    assert webhooks.signature("k", "1", b"{}") == "sha256=" + hmac.new(b"k", b"1.{}", hashlib.sha256).hexdigest()
    assert webhooks.signature("k", "1", b"{}") != webhooks.signature("k", "2", b"{}")
    assert webhooks.signature("k", "1", b"{}") != webhooks.signature("k", "1", b"{ }")


# Secrets -------------------------------------------------------------------------------------------


def test_the_secret_is_shown_once_and_never_in_lists_logs_or_the_audit_trail(state, receiver, tmp_path):
    endpoint_id, secret = add_endpoint(state, receiver.url)
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    path = state / "secrets" / f"webhook-{endpoint_id}"
    assert path.read_text().strip() == secret and stat.S_IMODE(path.stat().st_mode) == 0o600
    cli(state, "webhooks", "test", endpoint_id)
    export = tmp_path / "audit.jsonl"
    outputs = [
        cli(state, "webhooks", "list").output,
        cli(state, "webhooks", "list", "--json").output,
        cli(state, "webhooks", "deliveries", "--json").output,
        cli(state, "webhooks", "test", endpoint_id).output,
        cli(state, "audit", "--export", str(export)).output,
        export.read_text(),
        json.dumps([dict(row) for row in StateStore(state).db.execute("SELECT * FROM webhook_endpoints")]),
    ]
    assert endpoint_id in outputs[0]
    for output in outputs:
        assert secret not in output
    assert secret not in "".join(str(headers) for headers, _ in receiver.received)  # only its HMAC travels
    cli(state, "webhooks", "remove", endpoint_id)
    assert not path.exists()


def test_each_endpoint_has_its_own_secret(state, receiver):
    _, first = add_endpoint(state, receiver.url)
    _, second = add_endpoint(state, receiver.url)
    assert first != second


# Bad input and the SSRF guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/hook",
        "http://0.0.0.0/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
    ],
)
def test_a_url_on_this_machines_networks_is_refused_unless_allowed(state, url):
    result = cli(state, "webhooks", "add", url, code=2)
    assert "--allow-private" in result.output and "nothing was added" in result.output
    assert cli(state, "webhooks", "list").output == ""


def test_the_guard_checks_every_address_a_name_resolves_to_and_allows_public_ones():
    assert checked("https://93.184.215.14/hook", allow_private=False).addresses == ("93.184.215.14",)
    with pytest.raises(UrlRefused, match="localhost resolves to"):
        checked("http://localhost:8000/x", allow_private=False)  # ::1 and 127.0.0.1: each one checked
    assert checked("http://localhost:8000/x?a=1", allow_private=True).path == "/x?a=1"


def test_a_name_with_one_public_and_one_private_address_is_refused(monkeypatch):
    """A DNS answer (this machine has none to give) with a public address first and the metadata service after."""
    answer = [(2, 1, 6, "", ("93.184.215.14", 443)), (2, 1, 6, "", ("169.254.169.254", 443))]
    monkeypatch.setattr(webhook_urls.socket, "getaddrinfo", lambda *args, **kwargs: answer)
    with pytest.raises(UrlRefused, match=re.escape("hooks.example.com resolves to 169.254.169.254, a link-local")):
        checked("https://hooks.example.com/x", allow_private=False)


def test_the_guard_runs_again_before_each_delivery(state, receiver):
    endpoint_id, _ = add_endpoint(state, receiver.url)
    store = StateStore(state)
    store.db.execute("UPDATE webhook_endpoints SET allow_private=0 WHERE id=?", (endpoint_id,))
    store.audit.append("alice", "run started", "r1")
    webhook_delivery.stop_all()
    assert receiver.received == []
    assert "a loopback address" in webhook_delivery.deliveries(store)[0]["last_error"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["ftp://example.com/x"], "give an http:// or https:// URL"),
        (["not a url"], "give an http:// or https:// URL"),
        (["https://user:pw@example.com/x"], "carries a user or password"),
        (["https://93.184.215.14/x", "--event", "run.exploded"], "events 'run.exploded': unknown; give any of"),
        (["https://93.184.215.14/x", "--console-url", "console.example.com"], "console_url 'console.example.com'"),
        (["https://93.184.215.14/x", "--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting_and_nothing_is_added(state, args, named):
    result = cli(state, "webhooks", "add", *args, code=2)
    assert named in result.output
    assert cli(state, "webhooks", "list").output == ""
    assert not (state / "secrets").exists() or not list((state / "secrets").glob("webhook-*"))


def test_an_unknown_endpoint_is_named_with_the_known_ones(state, receiver):
    endpoint_id, _ = add_endpoint(state, receiver.url)
    for command in ("remove", "test"):
        result = cli(state, "webhooks", command, "000000000000", code=1)
        assert "no webhook endpoint '000000000000'" in result.output and endpoint_id in result.output


def test_removing_an_endpoint_cancels_what_it_had_queued(state, receiver):
    receiver.answer = "500"
    endpoint_id, _ = add_endpoint(state, receiver.url)
    store = StateStore(state)
    store.audit.append("alice", "run started", "r1")
    store.audit.append("alice", "run started", "r2")
    webhook_delivery.stop_all()
    assert "2 queued deliveries cancelled" in cli(state, "webhooks", "remove", endpoint_id).output
    assert {row["status"] for row in webhook_delivery.deliveries(store)} == {"cancelled"}


def test_the_slack_format_sends_a_readable_line(state, receiver):
    add_endpoint(state, receiver.url, "--format", "slack", "--cluster", "prod", "--console-url", "https://c.example")
    store = StateStore(state)
    store.audit.append("alice", "run finished", "r9", status="failed", failed_checkpoint="ray-deployment")
    webhook_delivery.stop_all()
    receiver.wait_for(1)
    text = receiver.documents()[0]["text"]
    assert text.startswith("[prod] run.failed by alice (") and "failed_checkpoint: ray-deployment" in text
    assert text.endswith("<https://c.example/runs/r9|open in the console>")


def test_no_endpoint_means_no_queue_and_no_thread(state):
    store = StateStore(state)
    store.audit.append("alice", "run started", "r1")
    assert webhook_delivery.RUNNING == {}
    assert store.db.execute("SELECT count(*) FROM webhook_events").fetchone()[0] == 0


def test_the_command_line_delivers_the_events_it_made_before_it_exits(state, receiver, inventory, raydeploy_cli):
    add_endpoint(state, receiver.url)
    store = StateStore(state)
    plan = Session(store, changes={"docker-installation": {"head": ["Install Docker"]}}).plan(
        inventory, _checkpoint("docker-installation"), store.directory
    )
    with webhook_delivery.sender_lock(state):  # this process sends nothing: the command must
        approval = Approvals(store).grant(plan, approved_by="bob", reason="CHG-3")
        store.db.execute("UPDATE approvals SET expires_at='2000-01-01T00:00:00.000000Z' WHERE id=?", (approval["id"],))
        webhook_delivery.stop_all()
    receiver.received.clear()
    # `raydeploy approvals` (its own process) finds the approval expired: that event is its own to send
    listed = raydeploy_cli("approvals", "-i", inventory, "--state-dir", str(state), timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert receiver.types() == ["approval.granted", "approval.expired"]


@pytest.fixture
def https_receiver(receiver, tmp_path):
    """The receiver behind TLS with a certificate for localhost that only SSL_CERT_FILE trusts, when set."""
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    receiver.cert = cert
    return receiver


def test_https_checks_the_receivers_certificate_for_the_urls_host(state, https_receiver, monkeypatch):
    add_endpoint(state, f"https://localhost:{https_receiver.port}/hook")
    store = StateStore(state)
    store.audit.append("alice", "run started", "r1")  # not trusted: refused, nothing posted
    webhook_delivery.stop_all()
    assert https_receiver.received == []
    assert "CERTIFICATE_VERIFY_FAILED" in webhook_delivery.deliveries(store)[0]["last_error"]
    monkeypatch.setenv("SSL_CERT_FILE", str(https_receiver.cert))  # now trusted, for localhost
    cli(state, "webhooks", "deliver", "--now")
    assert https_receiver.types() == ["run.started"]


def test_a_name_with_an_address_that_does_not_answer_is_reached_at_the_next(state, receiver, monkeypatch):
    """localhost as ::1 first (nothing listens there: the receiver is on 127.0.0.1), then 127.0.0.1."""
    add_endpoint(state, f"http://localhost:{receiver.port}/hook")
    answer = [(10, 1, 6, "", ("::1", receiver.port, 0, 0)), (2, 1, 6, "", ("127.0.0.1", receiver.port))]
    real = webhook_urls.socket.getaddrinfo
    fake = lambda host, *args, **kwargs: answer if host == "localhost" else real(host, *args, **kwargs)  # noqa: E731
    monkeypatch.setattr(webhook_urls.socket, "getaddrinfo", fake)
    StateStore(state).audit.append("alice", "run started", "r1")
    webhook_delivery.stop_all()
    assert receiver.types() == ["run.started"]
    assert receiver.received[0][0]["Host"] == f"localhost:{receiver.port}"
