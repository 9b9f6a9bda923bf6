"""The ``backfill`` command: the operator's hands on the same functions the API calls.

A user mistake (a bad ``YYYY-MM``, a bad range, an unknown month, a bad setting,
an unreachable database) prints one line and exits 2 -- never a traceback.
"""

from __future__ import annotations

import sys

import click
from click.exceptions import NoArgsIsHelpError

from backfill.cli import catalogue_commands as _catalogue  # noqa: F401  (registers)
from backfill.cli import commands as _commands  # noqa: F401  (registers the commands)
from backfill.cli import rework_commands as _rework  # noqa: F401  (registers the commands)
from backfill.cli.app import cli
from backfill.cli.params import UserError


def main() -> None:
    """Console-script entry point (``backfill = backfill.cli:main``)."""
    try:
        cli.main(prog_name="backfill", standalone_mode=False)
    except click.exceptions.Exit as exc:  # --help, a command's own exit code
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except NoArgsIsHelpError as exc:  # plain "backfill": the help, as click shows it
        click.echo(exc.format_message())
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # click prints usage, a hint and the error on several lines: one line here.
        command = exc.ctx.command_path if exc.ctx else "backfill"
        click.echo(f"Error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


__all__ = ["UserError", "cli", "main"]
