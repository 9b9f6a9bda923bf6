"""The ``backfill`` command: the operator's hands on the same functions the API calls.

A user mistake (a bad ``YYYY-MM``, a bad range, an unknown month, a bad setting,
an unreachable database) prints one line and exits 2 -- never a traceback.
"""

from __future__ import annotations

from backfill.cli import commands as _commands  # noqa: F401  (registers the commands)
from backfill.cli.app import cli
from backfill.cli.params import UserError


def main() -> None:
    """Console-script entry point (``backfill = backfill.cli:main``)."""
    cli(prog_name="backfill")


__all__ = ["UserError", "cli", "main"]
