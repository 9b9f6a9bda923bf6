"""The catalogue as a reader sees it: books, filtered, paged or streamed.

Services layer, read-only: functions take a session and never commit. Two
kinds of row make up the listing, both shown as one :class:`BookRow`:

* **resolved** -- a ``books`` row (one per ISBN-13). It is listed once, under the
  month it is filed under (``found_year``/``found_month``: the month that found
  it first), even when later months named it too; ``month``/``from``/``to``
  filter on that filed month.
* **unresolved** -- a current candidate (not superseded) without an ISBN-13
  whose fate is still open: status ``unresolved`` (not found anywhere yet) or
  ``pending`` (not tried yet), the same "open" set re-resolution works on.
  ``invalid_isbn`` candidates are hallucinations, not books: never listed.
  Such a book is listed under its candidate's month, once per candidate.

The order is total and stable -- month, title, then ISBN-13 (resolved) or
candidate id (unresolved) -- so pages never overlap or skip a row while the
data stays put. :func:`list_books` serves the API and ``backfill books``;
:func:`iter_books` streams the same rows, in the same order, for the export.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Select, String, cast, func, null, select, tuple_, union_all
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import RowMapping
from sqlalchemy.orm import QueryableAttribute, Session

from backfill.candidates import OPEN
from backfill.exceptions import InvalidInput
from backfill.models import BackfillLog, Book, Candidate

YearMonth = tuple[int, int]
ListedStatus = Literal["resolved", "unresolved"]
LISTED_STATUSES: tuple[ListedStatus, ...] = ("resolved", "unresolved")
PAGE_MAX = 1_000_000  # keeps OFFSET far inside PostgreSQL's bigint
PAGE_SIZE_MAX = 500
PAGE_SIZE_DEFAULT = 100
STREAM_BATCH = 1000  # rows per server-side cursor fetch while streaming
# The fields of a book, in the order every format shows them.
FIELDS = (
    "isbn13",
    "title",
    "authors",
    "publisher",
    "publication_date",
    "month",
    "generators",
    "resolver",
)


def month_label(year: int | None, month: int | None) -> str | None:
    """``YYYY-MM``, or None when the month is not known."""
    if year is None or month is None:
        return None
    return f"{year:04d}-{month:02d}"


def parse_month(value: str, field: str) -> YearMonth:
    """``YYYY-MM`` as ``(year, month)``, or :class:`InvalidInput` naming ``field``."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", value)
    if not match or not 1900 <= int(match[1]) <= 2100 or not 1 <= int(match[2]) <= 12:
        raise InvalidInput(field, f"must be YYYY-MM (got {value!r})")
    return int(match[1]), int(match[2])


def _generator_names(generator: str | None, generators: dict[str, Any] | None) -> list[str]:
    # books.generator is 'gemini' | 'xai' | 'both' (the candidate that filed it);
    # a candidate keeps what each generator said, keyed by generator name.
    if generator == "both":
        return ["gemini", "xai"]
    if generator:
        return [generator]
    return sorted(generators or {})


@dataclass(frozen=True)
class BookRow:
    """One book of the catalogue, as the API, the CLI and the export show it.

    ``isbn13`` is null for an unresolved book. ``month`` (YYYY-MM) is the month
    a resolved book is filed under (the first month that found it), or an
    unresolved book's candidate month. ``generators`` names the generators
    that proposed it; ``resolver`` the source that resolved it (null when
    unresolved).
    """

    isbn13: str | None
    title: str
    authors: list[str]
    publisher: str | None
    publication_date: str | None
    month: str | None
    generators: list[str]
    resolver: str | None

    @classmethod
    def from_row(cls, row: RowMapping) -> BookRow:
        """The DTO of one row of the listing query."""
        return cls(
            isbn13=row["isbn13"],
            title=row["title"],
            authors=list(row["authors"] or []),
            publisher=row["publisher"],
            publication_date=row["publication_date"],
            month=month_label(row["year"], row["month"]),
            generators=_generator_names(row["generator"], row["generators"]),
            resolver=row["resolver"],
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict, keys in :data:`FIELDS` order (the API's shape)."""
        return asdict(self)


class BooksPage(BaseModel):
    """One page of the listing (``GET /api/internal/books``, ``backfill books --json``)."""

    model_config = ConfigDict(extra="forbid")

    books: list[BookRow]
    page: int = Field(description="1-based")
    page_size: int
    total: int = Field(description="books matching the filters, all pages")


@dataclass(frozen=True)
class BookFilters:
    """Which books to list. Months are inclusive; ``status`` None means both kinds."""

    start: YearMonth | None = None
    end: YearMonth | None = None
    status: ListedStatus | None = None
    resolver: str | None = None
    q: str | None = None  # case-insensitive title substring

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in LISTED_STATUSES:
            raise InvalidInput("status", "must be resolved or unresolved")
        if self.start and self.end and self.start > self.end:
            raise InvalidInput(
                "from",
                f"must not be after to ({month_label(*self.start)} > {month_label(*self.end)})",
            )

    @classmethod
    def build(
        cls,
        month: YearMonth | None = None,
        start: YearMonth | None = None,
        end: YearMonth | None = None,
        **rest: Any,
    ) -> BookFilters:
        """Filters from the API's and the CLI's parameters: ``month`` is ``from`` = ``to``."""
        if month is not None:
            if start is not None or end is not None:
                raise InvalidInput("month", "give month, or from/to, not both")
            start = end = month
        return cls(start=start, end=end, **rest)


def _filtered(
    stmt: Select[Any],
    filters: BookFilters,
    year: QueryableAttribute[Any],
    month: QueryableAttribute[Any],
    title: QueryableAttribute[str],
    resolver: QueryableAttribute[Any],
) -> Select[Any]:
    if filters.start is not None:
        stmt = stmt.where(tuple_(year, month) >= filters.start)
    if filters.end is not None:
        stmt = stmt.where(tuple_(year, month) <= filters.end)
    if filters.resolver is not None:
        stmt = stmt.where(resolver == filters.resolver)
    if filters.q:
        # lower() on both sides; autoescape makes % and _ in q plain characters
        stmt = stmt.where(title.icontains(filters.q, autoescape=True))
    return stmt


def _resolved(filters: BookFilters) -> Select[Any]:
    stmt = select(
        Book.found_year.label("year"),
        Book.found_month.label("month"),
        Book.title.label("title"),
        Book.isbn13.label("isbn13"),
        cast(null(), BigInteger).label("candidate_id"),
        Book.authors.label("authors"),
        Book.publisher.label("publisher"),
        Book.publication_date.label("publication_date"),
        Book.generator.label("generator"),
        cast(null(), JSONB).label("generators"),
        Book.resolver.label("resolver"),
    )
    return _filtered(stmt, filters, Book.found_year, Book.found_month, Book.title, Book.resolver)


def _unresolved(filters: BookFilters) -> Select[Any]:
    stmt = (
        select(
            BackfillLog.year.label("year"),
            BackfillLog.month.label("month"),
            Candidate.title.label("title"),
            cast(null(), String).label("isbn13"),
            Candidate.id.label("candidate_id"),
            Candidate.authors.label("authors"),
            Candidate.publisher.label("publisher"),
            Candidate.publication_date.label("publication_date"),
            cast(null(), String).label("generator"),
            Candidate.generators.label("generators"),
            Candidate.resolver.label("resolver"),
        )
        .join(BackfillLog, BackfillLog.id == Candidate.backfill_id)
        .where(
            Candidate.superseded_at.is_(None),
            Candidate.status.in_(OPEN),
            Candidate.isbn13.is_(None),
        )
    )
    return _filtered(
        stmt, filters, BackfillLog.year, BackfillLog.month, Candidate.title, Candidate.resolver
    )


def _listing(filters: BookFilters) -> Select[Any]:
    """Every matching row, in the listing's total order."""
    parts = []
    if filters.status in (None, "resolved"):
        parts.append(_resolved(filters))
    if filters.status in (None, "unresolved"):
        parts.append(_unresolved(filters))
    sub = (union_all(*parts) if len(parts) > 1 else parts[0]).subquery("listing")
    # Books without a filed month (rows older than the column) sort last.
    return select(sub).order_by(
        sub.c.year.asc().nulls_last(),
        sub.c.month.asc().nulls_last(),
        sub.c.title,
        sub.c.isbn13.asc().nulls_last(),
        sub.c.candidate_id.asc().nulls_last(),
    )


def list_books(
    session: Session,
    filters: BookFilters,
    page: int = 1,
    page_size: int = PAGE_SIZE_DEFAULT,
) -> BooksPage:
    """One page of the matching books and how many match in all."""
    if not 1 <= page <= PAGE_MAX:
        raise InvalidInput("page", f"must be 1..{PAGE_MAX}")
    if not 1 <= page_size <= PAGE_SIZE_MAX:
        raise InvalidInput("page_size", f"must be 1..{PAGE_SIZE_MAX}")
    listing = _listing(filters)
    total = session.scalar(select(func.count()).select_from(listing.order_by(None).subquery()))
    rows = session.execute(listing.limit(page_size).offset((page - 1) * page_size)).mappings()
    return BooksPage(
        books=[BookRow.from_row(row) for row in rows],
        page=page,
        page_size=page_size,
        total=int(total or 0),
    )


def iter_books(
    session: Session, filters: BookFilters, batch: int = STREAM_BATCH
) -> Iterator[BookRow]:
    """Every matching book, in the listing's order, streamed.

    A server-side cursor (``yield_per``) fetches ``batch`` rows at a time, so
    memory stays flat however many books match. The caller keeps the session's
    transaction open while it iterates.
    """
    result = session.execute(_listing(filters), execution_options={"yield_per": batch})
    try:
        for row in result.mappings():
            yield BookRow.from_row(row)
    finally:
        result.close()  # an abandoned iteration closes the cursor too
