"""`raydeploy api`: serve the REST API; `raydeploy api token create|list|revoke`: who may use it."""

from __future__ import annotations

import ipaddress
import json

import click

from raydeploy.api.tokens import ROLES, TokenError, TokenStore
from raydeploy.commands import inventory_option, open_store, who_am_i


def server_limits() -> dict:
    """uvicorn's options that bound a request before the app sees it."""
    from raydeploy.api.errors import MAX_HEAD_BYTES

    # h11 named, not "auto": the head-size cap is h11's (httptools, if installed, has none); a head
    # that arrives in one read is whole before h11 judges it, so the app measures it again (CapRequest).
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES, "server_header": False}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group(invoke_without_command=True)
@inventory_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    envvar="RAYDEPLOY_API_CORS_ORIGINS",
    metavar="ORIGIN",
    help="A web origin allowed to call the API from a browser (repeatable; env: space-separated). Default: none.",
)
@click.option(
    "--separation-of-duties/--no-separation-of-duties",
    default=True,
    show_default=True,
    help="Whoever starts a run cannot approve its destructive checkpoint.",
)
@click.option(
    "--rate-limit",
    default=120,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Requests per token per minute; more are answered 429.",
)
@click.option(
    "--failed-auth-limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Failed authentications per client address per minute; more are answered 429 (a valid token still works).",
)
@click.option(
    "--validate-every",
    metavar="DURATION",
    help="Validate the cluster this often (30s, 5m, 1h; at least 10s), each result a run, a change of verdict "
    "an event (webhooks: validation.failing / validation.passing). Default: never.",
)
@click.pass_context
def api(
    ctx,
    inventory,
    state_dir,
    host,
    port,
    cors_origins,
    separation_of_duties,
    rate_limit,
    failed_auth_limit,
    validate_every,
):
    """Serve the REST API (FastAPI on uvicorn), sharing the wrapper's state, lock, approvals and audit trail.

    \b
    Examples:
      raydeploy api token create --name ci --role operator   # prints the token once
      raydeploy api                                          # http://127.0.0.1:8000, /docs for the OpenAPI UI
      raydeploy api --host 0.0.0.0 --port 8000               # refused until a token exists
      raydeploy api --validate-every 5m                      # and validate the cluster every 5 minutes

    Every path under /api/v1 needs `Authorization: Bearer <token>`; /healthz and the
    API's own documents (/openapi.json, /docs, /redoc) need none.
    """
    if ctx.invoked_subcommand is not None:
        return
    every = scheduled(validate_every)
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    tokens = TokenStore(store)
    if not is_loopback(host) and tokens.active_count() == 0:
        raise click.UsageError(
            f"refusing to listen on {host}, which is not loopback, with no API token configured; "
            "create one first: raydeploy api token create --name NAME --role viewer"
        )
    if tokens.active_count() == 0:
        click.echo("raydeploy api: no token exists yet; every request under /api/v1 will be refused (401)", err=True)
    import logging

    import uvicorn

    from raydeploy.api.app import create_app
    from raydeploy.api.console.signin import HideSignInCodes

    logging.getLogger("uvicorn.access").addFilter(HideSignInCodes())

    for origin in cors_origins:
        if not origin.startswith(("http://", "https://")) or origin.rstrip("/") != origin or origin == "*":
            raise click.UsageError(
                f"--cors-origin {origin!r} is not an origin like https://ops.example.com "
                "(scheme and host, no path, no wildcard)"
            )
    app = create_app(
        inventory, store.directory, separation_of_duties, list(cors_origins), rate_limit, failed_auth_limit, every
    )
    uvicorn.run(app, host=host, port=port, log_level="info", **server_limits())


def scheduled(validate_every: str | None):
    """--validate-every as a timedelta (None when not given); a usage error naming the fix otherwise."""
    if validate_every is None:
        return None
    from raydeploy.validation_schedule import ScheduleError, parse_every

    try:
        return parse_every(validate_every)
    except ScheduleError as error:
        raise click.UsageError(str(error)) from None


@api.group()
def token():
    """Create, list and revoke API tokens (stored hashed in the state directory)."""


def console_url_option(function):
    return click.option(
        "--console-url",
        default="http://127.0.0.1:8000",
        show_default=True,
        envvar="RAYDEPLOY_CONSOLE_URL",
        help="Where `raydeploy api` serves the console, as the person signing in reaches it.",
    )(function)


def sign_in_link(store, token_id: str, name: str, console_url: str) -> str:
    """A one-time link signing the holder in to the console as token TOKEN_ID's NAME; audited (not the link)."""
    from raydeploy.api.console.sessions import LINK_TTL_S, Sessions

    code = Sessions(store).link(token_id)
    store.audit.append(who_am_i(), "console sign-in link made", name, token_id=token_id)
    click.echo(f"sign-in link, usable once within {LINK_TTL_S // 60} minutes:", err=True)
    return f"{console_url.rstrip('/')}/signin/link?code={code}"


@token.command("create")
@inventory_option
@click.option("--name", required=True, help="Who the token is for: the identity the API records.")
@click.option("--role", required=True, type=click.Choice(ROLES), help="viewer < operator < approver < admin.")
@click.option("--sign-in-link", "with_link", is_flag=True, help="Also print a one-time link to the web console.")
@console_url_option
def create(inventory, state_dir, name, role, with_link, console_url):
    """Create a token; it is printed once and stored only as a hash. With --sign-in-link, a second line is
    a link that signs its first user in to the web console as NAME (once, within 15 minutes).

    \b
    Examples:
      raydeploy api token create --name alice --role approver
      raydeploy api token create --name bob --role operator --sign-in-link
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    try:
        token_id, secret = TokenStore(store).create(name, role, who_am_i())
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"token {token_id} for {name} ({role}); keep it now, it is not shown again:", err=True)
    click.echo(secret)
    if with_link:
        click.echo(sign_in_link(store, token_id, name, console_url))


@token.command("link")
@inventory_option
@click.argument("name_or_id")
@console_url_option
def link(inventory, state_dir, name_or_id, console_url):
    """Print a one-time link that signs in to the web console as an active token's identity (15 minutes).

    \b
    Example:
      raydeploy api token link alice
    """
    store = open_store(inventory, state_dir, must_exist_inventory=False)
    rows = store.active_tokens(name_or_id)
    if not rows:
        raise click.ClickException(f"no active token {name_or_id}; see `raydeploy api token list`")
    click.echo(sign_in_link(store, rows[0]["id"], rows[0]["name"], console_url))


@token.command("list")
@inventory_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_tokens(inventory, state_dir, as_json):
    """The tokens: id, name, role, created, revoked (never the tokens themselves).

    \b
    Example:
      raydeploy api token list
    """
    rows = TokenStore(open_store(inventory, state_dir, must_exist_inventory=False)).list()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}  {row['name']:<20} {row['role']:<9} created {row['created_at']}  {state}")


@token.command("revoke")
@inventory_option
@click.argument("name_or_id")
def revoke(inventory, state_dir, name_or_id):
    """Revoke a token by its name or id; it stops working at once.

    \b
    Example:
      raydeploy api token revoke alice
    """
    try:
        TokenStore(open_store(inventory, state_dir, must_exist_inventory=False)).revoke(name_or_id, who_am_i())
    except TokenError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"token {name_or_id} revoked")
