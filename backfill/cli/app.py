"""The command group, its error handling, and the session each command runs in."""

from __future__ import annotations

import json
from collections.abc import Callable
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
            raise UserError(f"{exc.field}: {exc.message}") from None
        except (MonthNotFound, MonthNotClaimable, ConfigError) as exc:
            raise UserError(str(exc)) from None
        except OperationalError as exc:
            raise UserError(
                f"database unreachable at {_db_location()}: {_first_line(exc)}"
            ) from None
        except PublishError as exc:
            raise click.ClickException(f"broker: {exc}") from None


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


@click.group(cls=Cli)
def cli() -> None:
    """Fill the book catalog month by month (see README)."""
