"""How the commands show things: rich tables, and a month's progress while waiting."""

from __future__ import annotations

import time

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from backfill import months, stats
from backfill.cli.app import console, run
from backfill.constants import MONTH_STATUSES

FINAL = ("completed", "failed")


def print_stats(report: stats.StatsReport) -> None:
    """The stats report as tables: overview, APIs and quota, recent months."""
    overview = Table("backfill", "", title=None)
    counts = report.by_status.model_dump()
    progress = report.progress
    overview.add_row("months", str(report.total_months))
    for status in MONTH_STATUSES:
        overview.add_row(f"  {status}", str(counts[status]))
    overview.add_row("books generated", str(progress.total_books_generated))
    overview.add_row(
        "books resolved",
        f"{progress.total_isbns_resolved} ({progress.overall_resolution_rate:.1f}%)",
    )
    overview.add_row("books unresolved", str(progress.total_unresolved))
    overview.add_row("resolved by re-resolution", str(progress.total_reresolved))
    overview.add_row("generator calls saved", str(progress.generator_calls_saved))
    overview.add_row("dispatching", "PAUSED" if report.paused else "running")
    console.print(overview)
    calls = report.api_calls.model_dump()
    quota = Table("provider", "calls (all time)", "used today", "limit", "left", title="APIs")
    for name, q in report.quota_today.items():
        left = f"{q.remaining}" + (" (exhausted)" if q.exhausted else "")
        quota.add_row(name, str(calls.get(name, 0)), str(q.used), str(q.limit), left)
    console.print(quota)
    if report.recent_activity:
        recent = Table("month", "status", "resolved / generated", "error", title="recent")
        for a in report.recent_activity[:10]:
            recent.add_row(
                f"{a.year:04d}-{a.month:02d}",
                a.status,
                f"{a.isbns_resolved} / {a.books_generated}",
                (a.error_message or "")[:60],
            )
        console.print(recent)


def wait_for(year: int, month: int, timeout: float, poll: float) -> None:
    """Poll the month's row, showing its progress, until it is completed or failed.

    ``retry`` and ``pending`` are not final: Celery retries the job by itself.
    Exits non-zero when the month failed or ``timeout`` passed.
    """
    label = f"{year:04d}-{month:02d}"
    deadline = time.monotonic() + timeout
    columns = (SpinnerColumn(), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(label, total=None)  # no known total: a pulsing bar
        while True:
            row = run(lambda s: stats.month_row(months.get(s, year, month)))
            progress.update(
                task,
                description=f"{label}: {row.status} · attempt {row.attempts} · "
                f"{row.isbns_resolved} resolved of {row.books_generated} generated",
            )
            if row.status in FINAL:
                break
            if time.monotonic() >= deadline:
                raise click.ClickException(f"{label} still {row.status} after {timeout:g}s")
            time.sleep(poll)
    if row.status == "failed":
        raise click.ClickException(f"{label} failed: {row.error_message or 'no error recorded'}")
    click.echo(
        f"{label} completed: {row.isbns_resolved} books resolved ({row.resolution_rate:.1f}%)"
    )
