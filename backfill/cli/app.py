"""The command group, its error handling, and the session each command runs in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import click
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from backfill.cli.params import UserError
from backfill.config import ConfigError, get_settings
from backfill.db import unit_of_work
from backfill.exceptions import InvalidInput, MonthNotClaimable, MonthNotFound, PublishError

T = TypeVar("T")
console = Console(highlight=False)


class Cli(click.Group):
    """Turns the service's expected errors into one-line user errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            raise UserError(flag_message(exc)) from None
        except (MonthNotFound, MonthNotClaimable, ConfigError) as exc:
            raise UserError(str(exc)) from None
        except OperationalError as exc:
            raise UserError(
                f"database unreachable at {_db_location()}: {_first_line(exc)}"
            ) from None
        except PublishError as exc:
            raise click.ClickException(f"broker: {exc}") from None


# The service's field names, as the flags a user typed them (``seed --from/--to``
# are years, ``books --from/--to`` months: both reach the service as these).
FLAGS = {
    "year_start": "--from",
    "year_end": "--to",
    "start_month": "--from",
    "end_month": "--to",
    "from": "--from",
    "to": "--to",
    "month": "--month",
    "status": "--status",
    "batch_size": "--batch-size",
    "page": "--page",
    "page_size": "--page-size",
}
# Field names inside the service's messages (``must not be before year_start``).
_IN_MESSAGE = re.compile(r"\b(year_start|year_end|start_month|end_month|batch_size|page_size)\b")
_BOOK_RANGE = (("after to (", "after --to ("), ("month, or from/to", "--month, or --from/--to"))


def flag_message(exc: InvalidInput) -> str:
    """``field: message`` with the service's field names replaced by the flags."""
    message = _IN_MESSAGE.sub(lambda m: FLAGS[m[1]], exc.message)
    for internal, flag in _BOOK_RANGE:
        message = message.replace(internal, flag)
    return f"{FLAGS.get(exc.field, exc.field)}: {message}"


def _first_line(exc: OperationalError) -> str:
    return (str(exc.orig or exc).strip().splitlines() or ["error"])[0]


def _db_location() -> str:
    url = make_url(get_settings().database_url)
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def run(fn: Callable[[Session], T]) -> T:
    """``fn(session)`` in one unit of work."""
    with unit_of_work() as session:
        return fn(session)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2))


def _version() -> str:
    try:
        return version("backfill")
    except PackageNotFoundError:  # a source tree that was never installed
        return "unknown"


@click.group(cls=Cli)
@click.version_option(_version(), "--version", prog_name="backfill", message="%(prog)s %(version)s")
def cli() -> None:
    """Fill the book catalog month by month (see README)."""
