"""`raydeploy`: the command line. Each command group lives beside the code it drives."""

from __future__ import annotations

import click

from raydeploy import __version__, webhook_delivery
from raydeploy.api.cli import api
from raydeploy.audit import AuditKeyError
from raydeploy.commands import COMMANDS
from raydeploy.lab.cli import lab
from raydeploy.webhook_cli import webhooks_group
from validate.cli import validate


class Commands(click.Group):
    """The command group: a trail whose audit key is missing stops any command that records, as an error
    that names the key's path and the fix (never a traceback); webhooks the command queued get their
    first try before it exits (what fails waits in the queue for `raydeploy api` or `webhooks deliver`)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AuditKeyError as error:
            raise click.ClickException(str(error)) from None
        finally:
            webhook_delivery.stop_all()


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="raydeploy")
def main() -> None:
    """Turn a handful of Linux hosts into a monitored Ray cluster, with a human in the loop.

    Start with the local lab: `raydeploy lab up`, then `pyinfra inventories/lab.py exec -- hostname`.
    """


def list_in_full(group: click.Group) -> None:
    """Give every command of GROUP (and of its groups) its whole first paragraph as the line in the group's listing.

    Click otherwise cuts that line to fit the terminal and ends it with "...", mid-sentence.
    """
    for command in group.commands.values():
        if command.short_help is None and command.help:
            command.short_help = " ".join(command.help.split("\n\n", 1)[0].split())
        if isinstance(command, click.Group):
            list_in_full(command)


for command in (*COMMANDS, api, lab, validate, webhooks_group):
    main.add_command(command)
list_in_full(main)
