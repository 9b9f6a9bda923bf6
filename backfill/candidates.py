"""A month's generated books (candidates) and the generators' stored answers.

Data layer: functions take a session and never commit. Every generator answer a
month paid for is a :class:`~backfill.models.Generation` row; every distinct book
in those answers is a :class:`~backfill.models.Candidate` row that keeps its fate
(``pending`` -> ``resolved`` | ``unresolved``; ``invalid_isbn`` for a book named
only with a made-up ISBN). Nothing is ever deleted: regenerating a month marks
its old answers and candidates superseded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backfill.models import Candidate, Generation

# Bounds of every stored string (the columns' sizes; evidence texts too).
TITLE_MAX, AUTHOR_MAX, AUTHORS_MAX = 500, 200, 10
PUBLISHER_MAX, DATE_MAX, REASON_MAX, ISBN_MAX = 300, 64, 1000, 32
OPEN = ("pending", "unresolved")


def bounded(value: Any, limit: int) -> str | None:
    """``value`` as stripped text cut to ``limit`` characters, or None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text[:limit] or None


def bounded_authors(values: Any) -> list[str]:
    """At most ten author names, each at most 200 characters."""
    if not isinstance(values, list | tuple):
        return []
    names = (bounded(v, AUTHOR_MAX) for v in values)
    return [n for n in names if n][:AUTHORS_MAX]


@dataclass(frozen=True)
class CandidateView:
    """One candidate as the API, the CLI and the dashboard show it."""

    id: int
    title: str
    authors: list[str]
    publisher: str | None
    publication_date: str | None
    status: str
    isbn13: str | None
    resolver: str | None
    generators: list[str]
    claimed_isbns: dict[str, list[str]]
    evidence: dict[str, Any]
    tries: int
    last_tried_at: dt.datetime | None
    reresolved: bool
    superseded: bool

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict (timestamps as ISO text)."""
        return {
            "id": self.id,
            "title": self.title,
            "authors": self.authors,
            "publisher": self.publisher,
            "publication_date": self.publication_date,
            "status": self.status,
            "isbn13": self.isbn13,
            "resolver": self.resolver,
            "generators": self.generators,
            "claimed_isbns": self.claimed_isbns,
            "evidence": self.evidence,
            "tries": self.tries,
            "last_tried_at": self.last_tried_at.isoformat() if self.last_tried_at else None,
            "reresolved": self.reresolved,
            "superseded": self.superseded,
        }


def view(row: Candidate) -> CandidateView:
    """The display shape of one candidate row."""
    generators = dict(row.generators or {})
    return CandidateView(
        id=row.id,
        title=row.title,
        authors=list(row.authors or []),
        publisher=row.publisher,
        publication_date=row.publication_date,
        status=row.status,
        isbn13=row.isbn13,
        resolver=row.resolver,
        generators=sorted(generators),
        claimed_isbns={
            name: list(entry.get("isbns") or [])
            for name, entry in sorted(generators.items())
            if isinstance(entry, dict)
        },
        evidence=dict(row.evidence or {}),
        tries=row.tries or 0,
        last_tried_at=row.last_tried_at,
        reresolved=bool(row.reresolved),
        superseded=row.superseded_at is not None,
    )


def current_generations(session: Session, backfill_id: int) -> dict[str, Generation]:
    """The month's stored generator answers that are not superseded, by provider."""
    rows = session.scalars(
        select(Generation).where(
            Generation.backfill_id == backfill_id, Generation.superseded_at.is_(None)
        )
    )
    return {row.provider: row for row in rows}


def of_month(
    session: Session, backfill_id: int, statuses: tuple[str, ...] | None = None
) -> list[Candidate]:
    """The month's current candidates (optionally only those in ``statuses``), oldest first."""
    query = select(Candidate).where(
        Candidate.backfill_id == backfill_id, Candidate.superseded_at.is_(None)
    )
    if statuses:
        query = query.where(Candidate.status.in_(statuses))
    return list(session.scalars(query.order_by(Candidate.id)))


def list_for_month(
    session: Session, backfill_id: int, include_superseded: bool = False
) -> list[CandidateView]:
    """Every candidate of the month for display (resolved first, then by title)."""
    query = select(Candidate).where(Candidate.backfill_id == backfill_id)
    if not include_superseded:
        query = query.where(Candidate.superseded_at.is_(None))
    rows = session.scalars(query.order_by(Candidate.superseded_at.desc(), Candidate.id))
    return [view(row) for row in rows]


@dataclass(frozen=True)
class Counts:
    """A month's counters as its candidates define them."""

    books_generated: int  # candidates that are not invalid_isbn
    isbns_resolved: int  # distinct ISBN-13s of its resolved candidates
    unresolved: int
    pending: int
    invalid_isbns: int

    @property
    def resolution_rate(self) -> float:
        if not self.books_generated:
            return 0.0
        return round(100.0 * self.isbns_resolved / self.books_generated, 2)


def counts(session: Session, backfill_id: int) -> Counts:
    """Count the month's current candidates by fate."""
    row = session.execute(
        select(
            func.count().filter(Candidate.status != "invalid_isbn"),
            func.count(func.distinct(Candidate.isbn13)).filter(Candidate.status == "resolved"),
            func.count().filter(Candidate.status == "unresolved"),
            func.count().filter(Candidate.status == "pending"),
            func.count().filter(Candidate.status == "invalid_isbn"),
        ).where(Candidate.backfill_id == backfill_id, Candidate.superseded_at.is_(None))
    ).one()
    return Counts(*(int(v or 0) for v in row))


def supersede(session: Session, backfill_id: int) -> tuple[int, int]:
    """Mark the month's current answers and candidates superseded (kept, not used);
    returns (generations, candidates) marked."""
    now = func.clock_timestamp()
    generations = session.execute(
        update(Generation)
        .where(Generation.backfill_id == backfill_id, Generation.superseded_at.is_(None))
        .values(superseded_at=now)
    )
    candidates = session.execute(
        update(Candidate)
        .where(Candidate.backfill_id == backfill_id, Candidate.superseded_at.is_(None))
        .values(superseded_at=now)
    )
    session.flush()
    return int(generations.rowcount), int(candidates.rowcount)  # type: ignore[attr-defined]
