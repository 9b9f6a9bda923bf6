"""How ``backfill month`` shows one month: its row, its attempts, its candidates."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import click
from rich.table import Table

from backfill.cli.app import console
from backfill.stats import MonthDetail

# Unresolved books stand out: they are what re-resolution and regeneration are for.
STATUS_STYLES = {"resolved": "green", "unresolved": "bold red", "invalid_isbn": "magenta"}


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def print_month(detail: MonthDetail) -> None:
    """The month's row, its attempt history and its candidates, as tables."""
    m = detail.month
    row = Table(m.label, "", title=None)
    row.add_row("status", m.status)
    row.add_row("attempts / retries used", f"{m.attempts} / {m.retry_count}")
    row.add_row(
        "books resolved / generated",
        f"{m.isbns_resolved} / {m.books_generated} ({m.resolution_rate:.1f}%)",
    )
    row.add_row(
        "API calls gemini / xai / isbndb", f"{m.gemini_calls} / {m.xai_calls} / {m.isbndb_calls}"
    )
    row.add_row("prompt variant, batch size", f"{m.prompt_variant}, {m.batch_size}")
    row.add_row("started / completed", f"{_when(m.started_at)} / {_when(m.completed_at)}")
    row.add_row("job", m.job_id or "-")
    if m.not_before:
        row.add_row("waiting until", _when(m.not_before))
    if detail.last_error:
        row.add_row("last error", detail.last_error[:200])
    console.print(row)
    if detail.attempts:
        attempts = Table("#", title="attempts")
        attempts.add_column("started", no_wrap=True)
        attempts.add_column("seconds")
        attempts.add_column("outcome", no_wrap=True)
        for name in ("calls g/x/i", "reused", "books", "resolved", "error"):
            attempts.add_column(name)
        for a in detail.attempts:
            attempts.add_row(
                str(a.attempt),
                _when(a.started_at),
                f"{a.duration_seconds:.1f}" if a.duration_seconds is not None else "-",
                a.outcome,
                f"{a.gemini_calls}/{a.xai_calls}/{a.isbndb_calls}",
                str(a.generators_reused),
                str(a.books_generated),
                str(a.isbns_resolved),
                (a.error or "")[:60],
            )
        console.print(attempts)
    if not detail.candidates:
        click.echo("no candidates (the month has not been generated yet)")
        return
    # Titles and authors wrap; the status and the ISBN are never cut.
    books = Table("title", "authors", title="candidates")
    books.add_column("status", no_wrap=True, min_width=len("invalid_isbn"))
    books.add_column("isbn13", no_wrap=True, min_width=13)
    books.add_column("resolver")
    books.add_column("generators")
    for c in detail.candidates:
        books.add_row(
            c.title,
            ", ".join(c.authors),
            c.status,
            c.isbn13 or "-",
            c.resolver or "-",
            ", ".join(c.generators),
            style=STATUS_STYLES.get(c.status),
        )
    console.print(books)
    by_status = Counter(c.status for c in detail.candidates)
    click.echo(
        f"{len(detail.candidates)} candidates: "
        + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    )
