"""Commands that work a month's books again: ``regenerate``, ``reresolve``, ``month``."""

from __future__ import annotations

import datetime as dt

import click
from rich.table import Table

from backfill import months, rework, stats
from backfill.cli.app import cli, console, echo_json, run
from backfill.cli.month_view import print_month
from backfill.cli.params import Duration, Month


@cli.command()
@click.argument("month", type=Month())
def regenerate(month: tuple[int, int]) -> None:
    """Ask the generators again for MONTH: its stored answers and candidates are kept
    but set aside (superseded), and the month is pending again."""
    done = run(lambda s: rework.regenerate(s, *month))
    click.echo(
        f"{done.month}: {done.generations_superseded} generator answers and "
        f"{done.candidates_superseded} candidates superseded (kept); "
        f"now {done.status}, the next schedule run generates it again"
    )


@cli.command()
@click.option("--month", type=Month(), help="only this month (YYYY-MM)")
@click.option(
    "--older-than",
    "older_than",
    type=Duration(),
    help="only books last tried at least this long ago, e.g. 7d, 12h, 30m",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def reresolve(
    month: tuple[int, int] | None, older_than: dt.timedelta | None, as_json: bool
) -> None:
    """Try unresolved books again through the resolution chain, without the LLMs.

    Runs here, under the global quotas and rate limits (it can take minutes);
    months a worker is processing are skipped. Beat runs it daily.
    """
    if month is not None:
        run(lambda s: months.get(s, *month))  # an unseeded month: one line, exit 2
    if not as_json:
        click.echo("re-resolving under the quotas; this can take minutes", err=True)
    result = rework.reresolve(month, older_than)
    if as_json:
        echo_json(result.as_json())
        return
    table = Table("re-resolution", "", title=None)
    table.add_row("months worked", str(len(result.months)))
    table.add_row("books tried", str(result.tried))
    table.add_row("  resolved", str(result.resolved))
    table.add_row("  still unresolved", str(result.unresolved))
    table.add_row("  not tried yet", str(result.pending))
    table.add_row("months skipped (busy)", ", ".join(result.busy) or "0")
    console.print(table)
    if result.stopped:
        click.echo(f"stopped early: {result.stopped} (the rest waits for the next run)")
    elif not result.months and not result.busy:
        click.echo("nothing to re-resolve")


@cli.command("month")
@click.argument("month", type=Month())
@click.option("--json", "as_json", is_flag=True, help="print the months/{YYYY-MM} endpoint's JSON")
def month_command(month: tuple[int, int], as_json: bool) -> None:
    """One month: its row, its attempts and its generated books (candidates)."""
    detail = run(lambda s: stats.month_detail(s, months.get(s, *month)))
    if as_json:
        echo_json(detail.model_dump(mode="json"))
        return
    print_month(detail)
