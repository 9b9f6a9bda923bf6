"""Storage of resolved books and of resolution answers, idempotent by construction.

Books are inserted on ISBN-13 with ``ON CONFLICT DO NOTHING``: a book named in
two months is one row that keeps the month that found it first and is never
rewritten by a later month (each month keeps its own candidate pointing at it).
Lookups are upserted on (kind, key), so a month processed twice, or by two
workers at once after a lost lease, leaves one row per book and per answer.
Rows are written in key order: two transactions writing overlapping sets then
lock rows in the same order and cannot deadlock.
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
    """One remembered answer: ``kind`` 'isbn' (ISBNdb's record for an ISBN-13, or
    none) or 'title' (a verified title key -> ISBN-13, or not found anywhere)."""

    kind: str
    key: str
    isbn13: str | None
    record: dict[str, Any] | None = None

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
    return {
        row.key: Lookup(row.kind, row.key, row.isbn13 if row.found else None, row.record)
        for row in rows
    }


def remember(session: Session, lookups: Iterable[Lookup]) -> None:
    """Record lookup answers (newest wins) and flush."""
    unique = {(item.kind, item.key): item for item in lookups}
    if not unique:
        return
    values = [
        {
            "kind": kind,
            "key": key,
            "found": item.found,
            "isbn13": item.isbn13,
            "record": item.record,
        }
        for (kind, key), item in sorted(unique.items())
    ]
    stmt = insert(LookupCache).values(values)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[LookupCache.kind, LookupCache.key],
            set_={
                "found": stmt.excluded.found,
                "isbn13": stmt.excluded.isbn13,
                "record": stmt.excluded.record,
                "looked_up_at": func.now(),
            },
        )
    )
    session.flush()


def insert_books(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """Insert books (dicts of :class:`Book` columns) not stored yet, then flush.

    A book already stored keeps its row as it is: the first month that found
    it, and the record it was verified on.
    """
    unique = {row["isbn13"]: row for row in rows}
    if not unique:
        return
    stmt = insert(Book).values([unique[key] for key in sorted(unique)])
    session.execute(stmt.on_conflict_do_nothing(index_elements=[Book.isbn13]))
    session.flush()
