"""Ground truth for grading a whole run: every ISBN the sandbox knows, and whose it is.

``GET /_sandbox/truth-isbns?from=YYYY-MM&to=YYYY-MM`` (at most
:data:`MAX_MONTHS` months) answers::

    {"from": "2024-01", "to": "2024-12",
     "isbns": {"<isbn13>": {"isbn13", "isbn10", "month", "index", "kind",
                            "book_title", "book_authors", "title", "authors",
                            "role", "right", "binding", "language",
                            "date_published"}},
     "books": [{"month", "index", "kind", "title", "authors", "isbn13",
                "findable", "traps"}]}

``month``/``index`` name the book the record is filed under (the one a resolver
was looking for when it met it); ``title``/``authors`` are what the ISBN really
is; ``role`` is ``edition`` for the book's own editions, else the trap's name;
``right`` is true for exactly one ISBN per findable book (its ``isbn13``). An
ISBN absent from ``isbns`` is one the sandbox never heard of: wrong too.
"""

from __future__ import annotations

from typing import Any

from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.editions import isbn10

MAX_MONTHS = 240


def months_between(start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    """Every (year, month) from ``start`` to ``end`` inclusive."""
    first, last = start[0] * 12 + start[1] - 1, end[0] * 12 + end[1] - 1
    return [(n // 12, n % 12 + 1) for n in range(first, last + 1)]


def isbn_truth(start: tuple[int, int], end: tuple[int, int]) -> dict[str, Any]:
    """The grading table for months ``start``..``end`` (ValueError if out of range)."""
    months = months_between(start, end)
    if not months:
        raise ValueError("'to' must not be before 'from'")
    if len(months) > MAX_MONTHS:
        raise ValueError(f"at most {MAX_MONTHS} months at a time")
    isbns: dict[str, dict[str, Any]] = {}
    books: list[dict[str, Any]] = []
    for year, month in months:
        label = f"{year:04d}-{month:02d}"
        for book in month_catalogue(year, month).books:
            right = book.isbn13
            books.append(
                {
                    "month": label,
                    "index": book.index,
                    "kind": book.kind,
                    "title": book.title,
                    "authors": list(book.authors),
                    "isbn13": right,
                    "findable": book.findable,
                    "traps": book.traps(),
                }
            )
            for record in book.all_records():
                isbns[record.isbn13] = {
                    "isbn13": record.isbn13,
                    "isbn10": isbn10(record.isbn13),
                    "month": label,
                    "index": book.index,
                    "kind": book.kind,
                    "book_title": book.title,
                    "book_authors": list(book.authors),
                    "title": record.title,
                    "authors": list(record.authors),
                    "role": record.role,
                    "right": record.isbn13 == right,
                    "binding": record.binding,
                    "language": record.language,
                    "date_published": record.date_published,
                }
    return {
        "from": f"{start[0]:04d}-{start[1]:02d}",
        "to": f"{end[0]:04d}-{end[1]:02d}",
        "isbns": isbns,
        "books": books,
    }
