"""The commands. Each opens one unit of work and calls a service function."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from sqlalchemy.engine import make_url

from backfill import scheduler, stats
from backfill.cli.app import cli, console, echo_json, run
from backfill.cli.params import IntIn, Month, OneOf, Year, YearRange
from backfill.cli.render import print_stats, wait_for
from backfill.config import get_settings
from backfill.constants import MONTH_STATUSES

# alembic.ini and alembic/ sit at the project root: the source tree's (an editable
# install, scripts/bootstrap's) or, for an installed package, the working directory
# (a platform's release step runs from the checkout).
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@cli.command()
@click.option("--from", "start", type=Year(), help="first year [BACKFILL_YEAR_START]")
@click.option("--to", "end", type=Year(), help="last year [BACKFILL_YEAR_END]")
def seed(start: int | None, end: int | None) -> None:
    """Insert one pending month per month of the range (idempotent)."""
    settings = get_settings()
    start = start if start is not None else settings.year_start
    end = end if end is not None else settings.year_end
    result = run(lambda s: scheduler.seed_months(s, start, end))
    click.echo(
        f"seeded {result.inserted} new months for {start}-{end} ({result.existing} already there)"
    )


@cli.command()
@click.option("--batch-size", type=IntIn(1, 50), help="months to claim [BACKFILL_BATCH_SIZE]")
@click.option("--years", type=YearRange(), help="year range, e.g. 2020-2024 (either order)")
@click.option("--dry-run", is_flag=True, help="list the candidates, claim nothing")
@click.option("--force-retry", is_flag=True, help="also take failed months")
def schedule(
    batch_size: int | None, years: tuple[int, int] | None, dry_run: bool, force_retry: bool
) -> None:
    """Claim months and dispatch them to the workers (what beat does every few minutes)."""
    settings = get_settings()
    result = run(
        lambda s: scheduler.schedule(
            s,
            batch_size=batch_size or settings.default_batch_size,
            dry_run=dry_run,
            year_range=years,
            force_retry=force_retry,
            settings=settings,
        )
    )
    table = Table("month", "status", "job id" if not dry_run else "resolved / generated")
    for m in result.months:
        extra = m.job_id or "" if not dry_run else f"{m.isbns_resolved} / {m.books_generated}"
        table.add_row(m.label, m.status, extra)
    if result.months:
        console.print(table)
    if result.paused:
        click.echo("paused: nothing dispatched (backfill resume)")
    why = f" ({result.reason})" if result.reason else ""  # paused, or a spent quota
    if dry_run:
        click.echo(f"dry run: {len(result.months)} months would be claimed{why}")
    else:
        click.echo(
            f"triggered {result.triggered}, skipped {result.skipped},"
            f" errors {len(result.errors)}{why}"
        )
    for err in result.errors:
        click.echo(f"  {err['year']:04d}-{err['month']:02d}: {err['error']}", err=True)


@cli.command("stats")
@click.option("--json", "as_json", is_flag=True, help="print the backfill-stats endpoint's JSON")
def stats_command(as_json: bool) -> None:
    """Where the backfill stands."""
    settings = get_settings()
    report = run(lambda s: stats.backfill_stats(s, settings))
    if as_json:
        echo_json(report.model_dump(mode="json"))
        return
    print_stats(report)


@cli.command()
@click.option("--status", type=OneOf(MONTH_STATUSES), help="only months in this status")
@click.option("--year", type=Year(), help="only this year")
@click.option("--limit", type=IntIn(1, 500), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def months(status: str | None, year: int | None, limit: int, as_json: bool) -> None:
    """List months, newest first."""
    page = run(lambda s: stats.list_months(s, status=status, year=year, limit=limit))
    if as_json:
        echo_json(page.model_dump(mode="json"))
        return
    if not page.months:
        click.echo("No months match.")  # limit >= 1 and no offset: none at all
        return
    table = Table("month", "status", "attempts", "retries", "resolved / generated", "error")
    for m in page.months:
        table.add_row(
            m.label,
            m.status,
            str(m.attempts),
            str(m.retry_count),
            f"{m.isbns_resolved} / {m.books_generated}",
            (m.error_message or "")[:60],
        )
    console.print(table)
    click.echo(f"{len(page.months)} of {page.total} months")


def _dispatch(
    month: tuple[int, int], batch_size: int | None, wait: bool, timeout: float, poll: float
) -> None:
    """Dispatch one month by hand to the workers (any state but completed or being
    processed); --wait follows it until it is completed or failed."""
    year, mon = month
    info = run(lambda s: scheduler.dispatch_month(s, year, mon, batch_size=batch_size))
    click.echo(f"dispatched {info.label} as job {info.job_id} (status {info.status})")
    if wait:
        wait_for(year, mon, timeout, poll)


_DISPATCH_PARAMS = [
    click.Argument(["month"], type=Month()),
    click.Option(
        ["--batch-size"], type=IntIn(1, 50), help="books to ask for (default: the month's)"
    ),
    click.Option(["--wait"], is_flag=True, help="wait until the month is completed or failed"),
    click.Option(
        ["--timeout"],
        type=click.FloatRange(min=0),
        default=1800.0,
        show_default=True,
        help="with --wait: give up (exit 1) after this many seconds",
    ),
    click.Option(["--poll"], type=click.FloatRange(min=0.05), default=1.0, hidden=True),
]
dispatch = click.Command(
    "dispatch", callback=_dispatch, params=_DISPATCH_PARAMS, help=_dispatch.__doc__
)
cli.add_command(dispatch)
# Its earlier name ("run-month" only ever dispatched): kept for operators'
# scripts, out of the command list.
cli.add_command(
    click.Command(
        "run-month",
        callback=_dispatch,
        params=_DISPATCH_PARAMS,
        help=_dispatch.__doc__,
        hidden=True,
    )
)


@cli.command()
@click.argument("month", type=Month())
def retry(month: tuple[int, int]) -> None:
    """Put a failed month back in the queue with a fresh retry budget."""
    row = run(lambda s: stats.month_row(scheduler.retry_month(s, *month)))
    click.echo(f"{row.label} is {row.status} again; the next schedule run takes it")


@cli.command()
def pause() -> None:
    """Stop dispatching months (workers finish what they have)."""
    run(lambda s: scheduler.set_paused(s, True))
    click.echo("dispatching paused")


@cli.command()
def resume() -> None:
    """Start dispatching months again."""
    run(lambda s: scheduler.set_paused(s, False))
    click.echo("dispatching resumed")


@cli.command()
def migrate() -> None:
    """Create the database DATABASE_URL names when it is missing, and migrate it to
    the newest schema (what a deploy's release step runs; idempotent)."""
    from alembic.config import Config

    from alembic import command
    from backfill.db import create_database

    settings = get_settings()
    if create_database(settings.database_url):
        click.echo(f"created database {make_url(settings.database_url).database}")
    root = _SOURCE_ROOT if (_SOURCE_ROOT / "alembic.ini").exists() else Path.cwd()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.attributes["configure_logger"] = False  # keep alembic's INFO lines out
    command.upgrade(config, "head")
    click.echo("database schema is up to date")
