"""The numbers ``GET /metrics`` exports, read from the database in one go
(:func:`metrics_snapshot`; :mod:`backfill.web.prometheus` renders them).

PostgreSQL is the source of truth, so the web process exports what the
database says rather than counting events in its own memory: every gunicorn
worker and every scrape agree, and nothing is lost on restart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from backfill import quota
from backfill.config import Settings, get_settings
from backfill.constants import PROVIDERS
from backfill.control import is_paused, last_schedule_run
from backfill.db import db_now
from backfill.models import Book
from backfill.stats.candidate_stats import candidate_totals
from backfill.stats.queries import book_totals, status_counts

# Upper bounds (seconds) of the month-duration histogram: a month takes from
# seconds (sandbox) to many minutes (real APIs under a per-second ISBNdb rate).
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound (``le``), plus the total count and sum."""

    buckets: list[tuple[float, int]]
    count: int
    sum: float


@dataclass(frozen=True)
class MetricsSnapshot:
    months_by_status: dict[str, int]
    isbns_resolved: int
    books_generated: int
    books_stored: int
    # (provider, call outcome) -> requests sent that ended that way
    api_calls: dict[tuple[str, str], int]
    quota: dict[str, dict[str, Any]]
    durations: dict[str, Histogram]  # by attempt outcome
    paused: bool
    seconds_since_last_schedule: float | None
    last_schedule_at: dt.datetime | None
    candidates_by_status: dict[str, int]  # current (not superseded) candidates
    candidates_reresolved: int  # resolved by re-resolution, all time
    generator_calls_saved: int  # sum of month_attempts.generators_reused
    isbns_queued: int  # ISBNs in confirmed hand-off batches, all time (superseded included)
    handoff_failures: int  # hand-off publishes that failed, all time
    handoff_batches_unsent: int  # current batches waiting for (another) publish


def _api_calls(session: Session) -> dict[tuple[str, str], int]:
    """Requests by provider and how they ended; ``ok`` is always there (0 before any)."""
    calls: dict[tuple[str, str], int] = {(provider, "ok"): 0 for provider in PROVIDERS}
    rows = session.execute(text("SELECT provider, outcome, calls FROM api_call_outcomes"))
    for provider, outcome, n in rows:
        calls[(str(provider), str(outcome))] = int(n)
    return calls


def _durations(session: Session) -> dict[str, Histogram]:
    # The bucket bounds are constants of this module, never user input.
    buckets = ", ".join(
        f"count(*) FILTER (WHERE d <= {float(bound)!r}) AS b{i}"
        for i, bound in enumerate(DURATION_BUCKETS)
    )
    rows = session.execute(
        text(
            f"SELECT outcome, count(*) AS n, coalesce(sum(d), 0) AS total, {buckets} FROM ("
            " SELECT outcome, extract(epoch FROM finished_at - started_at)::float8 AS d"
            " FROM month_attempts WHERE finished_at IS NOT NULL) t GROUP BY outcome"
        )
    ).mappings()
    return {
        str(row["outcome"]): Histogram(
            buckets=[(bound, int(row[f"b{i}"])) for i, bound in enumerate(DURATION_BUCKETS)],
            count=int(row["n"]),
            sum=float(row["total"]),
        )
        for row in rows
    }


def _handoffs(session: Session) -> tuple[int, int, int]:
    """(ISBNs sent, failed publishes, current batches unsent) over every hand-off."""
    row = session.execute(
        text(
            "SELECT coalesce(sum(cardinality(isbns)) FILTER (WHERE sent_at IS NOT NULL), 0),"
            " coalesce(sum(failures), 0),"
            " count(*) FILTER (WHERE sent_at IS NULL AND superseded_at IS NULL)"
            " FROM handoffs"
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


def metrics_snapshot(session: Session, settings: Settings | None = None) -> MetricsSnapshot:
    """Everything ``/metrics`` reports, as of now."""
    settings = settings or get_settings()
    totals = book_totals(session)
    stored = session.execute(select(func.count()).select_from(Book)).scalar_one()
    last = last_schedule_run(session)
    now = db_now(session)
    books = candidate_totals(session)
    queued, failures, unsent = _handoffs(session)
    return MetricsSnapshot(
        months_by_status=status_counts(session).model_dump(),
        isbns_resolved=totals.isbns_resolved,
        books_generated=totals.books_generated,
        books_stored=int(stored),
        api_calls=_api_calls(session),
        quota=quota.daily_usage(session, settings),
        durations=_durations(session),
        paused=is_paused(session),
        seconds_since_last_schedule=max((now - last).total_seconds(), 0.0) if last else None,
        last_schedule_at=last,
        candidates_by_status=books.by_status,
        candidates_reresolved=books.reresolved,
        generator_calls_saved=books.generator_calls_saved,
        isbns_queued=queued,
        handoff_failures=failures,
        handoff_batches_unsent=unsent,
    )
