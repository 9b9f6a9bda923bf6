"""Commands that read the catalogue: ``books`` (a page, as the API lists it) and
``export`` (every book, streamed to JSONL or CSV)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import click
from rich.table import Table

from backfill import catalogue, export
from backfill.cli.app import cli, console, echo_json, run
from backfill.cli.params import IntIn, Month, OneOf, UserError
from backfill.exceptions import InvalidInput

# Unresolved books stand out, as in ``backfill month``.
UNRESOLVED_STYLE = "bold red"


def _filters(**given: Any) -> catalogue.BookFilters:
    """The filters, or one line naming the option (``--from: must not be after to``)."""
    try:
        return catalogue.BookFilters.build(**given)
    except InvalidInput as exc:
        raise UserError(f"--{exc.field}: {exc.message}") from None


@cli.command()
@click.option("--month", type=Month(), help="only books filed under this month (YYYY-MM)")
@click.option("--from", "start", type=Month(), help="first month, inclusive (YYYY-MM)")
@click.option("--to", "end", type=Month(), help="last month, inclusive (YYYY-MM)")
@click.option(
    "--status",
    type=OneOf(catalogue.LISTED_STATUSES),
    help="resolved (with an ISBN-13) or unresolved (open candidates); default both",
)
@click.option("--resolver", help="only books resolved by this source, e.g. openlibrary")
@click.option("--q", "q", help="case-insensitive substring of the title")
@click.option("--page", type=IntIn(1, catalogue.PAGE_MAX), default="1", help="page number [1]")
@click.option(
    "--page-size",
    type=IntIn(1, catalogue.PAGE_SIZE_MAX),
    default=str(catalogue.PAGE_SIZE_DEFAULT),
    help=f"books per page [{catalogue.PAGE_SIZE_DEFAULT}]",
)
@click.option("--json", "as_json", is_flag=True, help="print the books endpoint's JSON")
def books(
    month: catalogue.YearMonth | None,
    start: catalogue.YearMonth | None,
    end: catalogue.YearMonth | None,
    status: catalogue.ListedStatus | None,
    resolver: str | None,
    q: str | None,
    page: int,
    page_size: int,
    as_json: bool,
) -> None:
    """List books: resolved ones under the month that found them first, and
    unresolved generated books (pending or unresolved) under their month."""
    filters = _filters(month=month, start=start, end=end, status=status, resolver=resolver, q=q)
    result = run(lambda s: catalogue.list_books(s, filters, page, page_size))
    if as_json:
        echo_json(result.model_dump(mode="json"))
        return
    if not result.books:
        shown = f" on page {page} (there are {result.total})" if result.total else ""
        click.echo(f"No books match these filters{shown}.")
        return
    # Titles and authors wrap; the month, ISBN, resolver and generators never do.
    table = Table(title=None)
    table.add_column("month", no_wrap=True)
    table.add_column("title", ratio=3)
    table.add_column("authors", ratio=2)
    table.add_column("isbn13", no_wrap=True, min_width=13)
    table.add_column("resolver", no_wrap=True, min_width=len("isbndb:title"))
    table.add_column("generators", no_wrap=True)
    for book in result.books:
        table.add_row(
            book.month or "-",
            book.title,
            ", ".join(book.authors),
            book.isbn13 or "-",
            book.resolver or "-",
            ",".join(book.generators),
            style=None if book.isbn13 else UNRESOLVED_STYLE,
        )
    console.print(table)
    pages = -(-result.total // page_size)
    first = (page - 1) * page_size + 1
    click.echo(
        f"books {first}-{first + len(result.books) - 1} of {result.total} (page {page} of {pages})"
    )


@contextmanager
def _stdout() -> Iterator[TextIO]:
    """Standard output as UTF-8 text with ``newline=""`` (CSV's ``\\r\\n`` kept),
    whatever the locale; left open for the caller's process."""
    sys.stdout.flush()  # anything already written as text goes first
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
    try:
        yield out
        out.flush()
    finally:
        out.detach()


def _to_stdout(write: Callable[[TextIO], int]) -> int:
    try:
        with _stdout() as out:
            return write(out)
    except BrokenPipeError:
        # ``backfill export ... | head``: the reader left. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


@cli.command("export")
@click.option("--format", "fmt", type=OneOf(export.FORMATS), required=True, help="jsonl or csv")
@click.option("--from", "start", type=Month(), help="first month, inclusive (YYYY-MM)")
@click.option("--to", "end", type=Month(), help="last month, inclusive (YYYY-MM)")
@click.option(
    "--include-unresolved",
    is_flag=True,
    help="also the unresolved generated books (pending or unresolved, no ISBN-13)",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write this file (replaced atomically when complete) instead of stdout",
)
def export_command(
    fmt: str,
    start: catalogue.YearMonth | None,
    end: catalogue.YearMonth | None,
    include_unresolved: bool,
    output: Path | None,
) -> None:
    """Export the catalogue, one book per line, with the same fields as the API.

    Resolved books by default, each under the month that found it first; rows
    are streamed from the database, so memory stays flat at any size.
    """
    status = None if include_unresolved else "resolved"
    filters = _filters(start=start, end=end, status=status)
    if output is None:
        run(lambda s: _to_stdout(lambda out: export.export(s, filters, fmt, out)))
        return

    def to_file(session: Any) -> int:
        with export.atomic_file(output) as out:
            return export.export(session, filters, fmt, out)

    try:
        count = run(to_file)
    except OSError as exc:  # no such directory, not writable, disk full
        raise UserError(f"--output: {exc.strerror or exc} ({output})") from None
    click.echo(f"exported {count} books to {output}", err=True)
