"""Storage of resolved books and of ISBNdb lookups, idempotent by construction.

Books are upserted on ISBN-13 and lookups on (kind, key) with ``ON CONFLICT``,
so a month processed twice, or by two workers at once after a lost lease,
leaves one row per book. Rows are written in key order: two transactions
writing overlapping sets then lock rows in the same order and cannot deadlock.
Nothing here commits; the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from backfill.models import Book, LookupCache


@dataclass(frozen=True)
class Lookup:
    """One remembered ISBNdb answer: ``kind`` 'isbn' or 'title', the key, the ISBN found."""

    kind: str
    key: str
    isbn13: str | None

    @property
    def found(self) -> bool:
        return self.isbn13 is not None


def load_books(session: Session, isbns: Iterable[str]) -> dict[str, Book]:
    """Stored books by ISBN-13, for those of ``isbns`` already in the catalog."""
    wanted = sorted(set(isbns))
    if not wanted:
        return {}
    rows = session.scalars(select(Book).where(Book.isbn13.in_(wanted)))
    return {book.isbn13: book for book in rows}


def load_lookups(
    session: Session, kind: str, keys: Iterable[str], not_found_ttl_days: int
) -> dict[str, Lookup]:
    """Lookups still valid: every 'found', and 'not found' younger than the TTL."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    fresh_after = func.now() - dt.timedelta(days=not_found_ttl_days)
    rows = session.scalars(
        select(LookupCache).where(
            LookupCache.kind == kind,
            LookupCache.key.in_(wanted),
            or_(LookupCache.found, LookupCache.looked_up_at > fresh_after),
        )
    )
    return {row.key: Lookup(row.kind, row.key, row.isbn13 if row.found else None) for row in rows}


def remember(session: Session, lookups: Iterable[Lookup]) -> None:
    """Record lookup answers (newest wins) and flush."""
    unique = {(item.kind, item.key): item for item in lookups}
    if not unique:
        return
    values = [
        {"kind": kind, "key": key, "found": item.found, "isbn13": item.isbn13}
        for (kind, key), item in sorted(unique.items())
    ]
    stmt = insert(LookupCache).values(values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[LookupCache.kind, LookupCache.key],
            set_={
                "found": stmt.excluded.found,
                "isbn13": stmt.excluded.isbn13,
                "looked_up_at": func.now(),
            },
        )
    )
    session.flush()


def upsert_books(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """Insert or update books (dicts of :class:`Book` columns) on ISBN-13, then flush.

    The month a book was first found is kept: a later month that finds it
    again does not move it.
    """
    unique = {row["isbn13"]: row for row in rows}
    if not unique:
        return
    stmt = insert(Book).values([unique[key] for key in sorted(unique)])
    excluded = stmt.excluded
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Book.isbn13],
            set_={
                "title": excluded.title,
                "authors": excluded.authors,
                "publisher": excluded.publisher,
                "publication_date": excluded.publication_date,
                "found_year": func.coalesce(Book.found_year, excluded.found_year),
                "found_month": func.coalesce(Book.found_month, excluded.found_month),
                "generator": excluded.generator,
                "resolver": excluded.resolver,
                "payload": excluded.payload,
                "updated_at": func.now(),
            },
        )
    )
    session.flush()
