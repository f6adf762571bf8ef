"""`raydeploy webhooks add|list|remove|test|deliveries|deliver`: who hears of raydeploy's events, and how it went."""

from __future__ import annotations

import json

import click

from raydeploy import webhook_delivery, webhooks
from raydeploy.commands import inventory_option, open_store, who_am_i
from raydeploy.webhook_outbox import EVENT_TYPES
from raydeploy.webhooks import inventory_cluster


def timeout_option(function):
    return click.option(
        "--timeout",
        default=webhook_delivery.DEFAULT_TIMEOUT_S,
        show_default=True,
        type=click.FloatRange(0.1, 120),
        help="Seconds to wait for a receiver's answer; a silent one counts as a failed try.",
    )(function)


def echo_attempts(done: list[dict]) -> None:
    for item in done:
        how = f"{item['code']}" if item["error"] is None else f"{item['code'] or '-'} {item['error']}"
        click.echo(f"{item['endpoint']}  {item['type']:<20} {item['status']:<9} {how}")


@click.group("webhooks")
def webhooks_group() -> None:
    """Signed webhooks for raydeploy's own events: approvals, runs, validation verdicts, broken locks.

    Every event is queued in the state database with the change it announces, then posted to each
    endpoint in order, signed (X-Raydeploy-Signature-256), and retried with backoff for a day.
    """


@webhooks_group.command("add")
@inventory_option
@click.argument("url")
@click.option(
    "--format",
    "format_",
    type=click.Choice(webhooks.FORMATS),
    default="json",
    show_default=True,
    help="json: the signed event document; slack: a readable message for a Slack-compatible incoming webhook.",
)
@click.option(
    "--event",
    "events",
    multiple=True,
    metavar="TYPE",
    help=f"Only these event types (repeatable; default: all): {', '.join(EVENT_TYPES)}.",
)
@click.option("--cluster", help="The cluster's name in each event (default: the inventory's cluster_name, else ray).")
@click.option(
    "--console-url",
    envvar="RAYDEPLOY_CONSOLE_URL",
    help="The web console's base URL, for each event's link to its run or approval (default: no link).",
)
@click.option(
    "--allow-private",
    is_flag=True,
    help="Allow a URL on loopback, link-local or private addresses (refused otherwise: SSRF guard).",
)
def add(inventory, state_dir, url, format_, events, cluster, console_url, allow_private):
    """Add an endpoint; its signing secret is printed once (keep it: it is not shown again).

    \b
    Examples:
      raydeploy webhooks add https://hooks.example.com/raydeploy --console-url https://raydeploy.example.com
      raydeploy webhooks add https://hooks.slack.com/services/T/B/X --format slack --event run.failed
      raydeploy webhooks add http://127.0.0.1:9000/hook --allow-private   # a receiver on this machine
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    name = cluster or inventory_cluster(inventory, str(store.directory))
    try:
        endpoint, secret = webhooks.add(store, url, who_am_i(), format_, list(events), name, console_url, allow_private)
    except webhooks.WebhookError as error:
        raise click.UsageError(str(error)) from None
    click.echo(
        f"webhook {endpoint['id']} -> {endpoint['url']} ({endpoint['format']}); its signing secret, "
        "shown this once (keep it with the receiver):",
        err=True,
    )
    click.echo(secret)


@webhooks_group.command("list")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_endpoints(inventory, state_dir, as_json):
    """The endpoints: id, URL, format, events (never their secrets)."""
    rows = webhooks.endpoints(open_store(inventory, state_dir, must_exist_inventory=False))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        events = "all events" if len(row["events"]) == len(EVENT_TYPES) else ", ".join(row["events"])
        private = ", private addresses allowed" if row["allow_private"] else ""
        click.echo(f"{row['id']}  {row['url']}  {row['format']}  {events}{private}  (by {row['created_by']})")


@webhooks_group.command("remove")
@inventory_option
@click.argument("endpoint_id")
def remove(inventory, state_dir, endpoint_id):
    """Remove an endpoint: what it still had queued is cancelled, its secret deleted."""
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    try:
        cancelled = webhooks.remove(store, endpoint_id, who_am_i())
    except webhooks.WebhookError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"webhook {endpoint_id} removed ({cancelled} queued deliveries cancelled)")


@webhooks_group.command("test")
@inventory_option
@click.argument("endpoint_id")
@timeout_option
def test(inventory, state_dir, endpoint_id, timeout):
    """Queue a `webhook.test` event for one endpoint and send it now: exit 0 when it was delivered."""
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    try:
        event_id = webhooks.queue_test(store, endpoint_id, who_am_i())
    except webhooks.WebhookError as error:
        raise click.ClickException(str(error)) from None
    webhook_delivery.stop_all()  # a deliverer may have sent it already; then this sends what is still due
    echo_attempts(webhook_delivery.drain(store, timeout))
    row = webhook_delivery.delivery(store, endpoint_id, event_id)
    if row["status"] != "delivered":
        raise click.ClickException(
            f"the test was not delivered ({row['last_error'] or 'it waits behind earlier deliveries that failed'}); "
            "it stays queued and is retried: see `raydeploy webhooks deliveries`"
        )
    click.echo(f"test delivered to {endpoint_id}: HTTP {row['last_code']}")


@webhooks_group.command("deliveries")
@inventory_option
@click.option("--endpoint", "endpoint_id", help="Only this endpoint's deliveries.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def deliveries(inventory, state_dir, endpoint_id, limit, as_json):
    """The delivery log, newest first: event, status, attempts, the last answer, the next try."""
    rows = webhook_delivery.deliveries(open_store(inventory, state_dir, must_exist_inventory=False), endpoint_id, limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        answer = row["last_error"] or (str(row["last_code"]) if row["last_code"] else "not tried yet")
        then = f", next try {row['next_attempt_at']}" if row["next_attempt_at"] else ""
        click.echo(
            f"{row['seq']:>5}  {row['endpoint_id']}  {row['type']:<20} {row['status']:<9} "
            f"attempts {row['attempts']}: {answer}{then}"
        )


@webhooks_group.command("deliver")
@inventory_option
@click.option(
    "--now", "retry_now", is_flag=True, help="Also retry what waits for its next try (after a receiver is back)."
)
@timeout_option
def deliver(inventory, state_dir, retry_now, timeout):
    """Send what is due in the queue, without `raydeploy api` (exit 1 when anything stays queued).

    \b
    Example (cron or a systemd timer, when no API runs):
      raydeploy webhooks deliver
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    webhook_delivery.stop_all()  # this command sends in the foreground
    echo_attempts(webhook_delivery.drain(store, timeout, retry_now))
    waiting = [row for row in webhook_delivery.deliveries(store, limit=100000) if row["status"] == "pending"]
    if waiting:
        raise click.ClickException(
            f"{len(waiting)} deliveries stay queued, the next try at {min(r['next_attempt_at'] for r in waiting)}; "
            "see `raydeploy webhooks deliveries` (--now retries them at once)"
        )
