"""Read-only queries: stats, month lists, month detail, the dashboard grid."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from backfill import quota
from backfill.config import Settings, get_settings
from backfill.constants import FINISHED_STATUSES, MONTH_STATUSES
from backfill.control import is_paused
from backfill.models import BackfillLog, MonthAttempt
from backfill.stats.candidate_stats import candidate_totals, month_candidates
from backfill.stats.reports import (
    RECENT_ACTIVITY_LIMIT,
    Activity,
    ApiCalls,
    Attempt,
    BookTotals,
    GridCell,
    MonthDetail,
    MonthRow,
    MonthsPage,
    Progress,
    QuotaToday,
    StatsReport,
    StatusCounts,
)

# The first and the last month of a range, inclusive: ((year, month), (year, month)).
MonthSpan = tuple[tuple[int, int], tuple[int, int]]


def _rate(resolved: int, generated: int) -> float:
    """Resolution rate in percent, two decimals; 0 when nothing was generated."""
    return round(resolved * 100.0 / generated, 2) if generated else 0.0


def month_row(row: BackfillLog) -> MonthRow:
    """The API view of a ``backfill_log`` row."""
    return MonthRow.of(row)


def _within(span: MonthSpan | None) -> list[ColumnElement[bool]]:
    """The condition for the months of ``span`` (none when every month counts)."""
    if span is None:
        return []
    (first_year, first_month), (last_year, last_month) = span
    key = BackfillLog.year * 12 + BackfillLog.month
    return [key.between(first_year * 12 + first_month, last_year * 12 + last_month)]


def status_counts(session: Session, span: MonthSpan | None = None) -> StatusCounts:
    """How many months (of ``span``, default all) are in each status."""
    rows = session.execute(
        select(BackfillLog.status, func.count()).where(*_within(span)).group_by(BackfillLog.status)
    ).all()
    counts = {status: int(n) for status, n in rows if status in MONTH_STATUSES}
    return StatusCounts(**counts)


def book_totals(session: Session, span: MonthSpan | None = None) -> BookTotals:
    """Books generated and ISBNs resolved over the months of ``span`` (default all)."""
    generated, resolved = session.execute(
        select(
            func.coalesce(func.sum(BackfillLog.books_generated), 0),
            func.coalesce(func.sum(BackfillLog.isbns_resolved), 0),
        ).where(*_within(span))
    ).one()
    return BookTotals(books_generated=int(generated), isbns_resolved=int(resolved))


def recent_activity(session: Session, limit: int = RECENT_ACTIVITY_LIMIT) -> list[Activity]:
    """Months that finished an attempt (completed, failed or waiting to retry), latest first.

    "When" is the month's completion time, else its last retry, else its last update.
    """
    finished_at = func.coalesce(
        func.greatest(BackfillLog.completed_at, BackfillLog.last_retry_at), BackfillLog.updated_at
    )
    rows = session.execute(
        select(BackfillLog, finished_at.label("finished_at"))
        .where(BackfillLog.status.in_(FINISHED_STATUSES))
        .order_by(finished_at.desc(), BackfillLog.id.desc())
        .limit(min(limit, RECENT_ACTIVITY_LIMIT))
    ).all()
    return [Activity.of(row, finished_at=when) for row, when in rows]


def backfill_stats(session: Session, settings: Settings | None = None) -> StatsReport:
    """The whole backfill in numbers (the original stats endpoint, plus calls, quota, pause)."""
    settings = settings or get_settings()
    totals = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(BackfillLog.books_generated), 0),
            func.coalesce(func.sum(BackfillLog.isbns_resolved), 0),
            func.coalesce(func.sum(BackfillLog.gemini_calls), 0),
            func.coalesce(func.sum(BackfillLog.xai_calls), 0),
            func.coalesce(func.sum(BackfillLog.isbndb_calls), 0),
            func.coalesce(func.sum(BackfillLog.openlibrary_calls), 0),
            func.coalesce(func.sum(BackfillLog.googlebooks_calls), 0),
            func.coalesce(func.sum(BackfillLog.isbns_queued), 0),
        )
    ).one()
    months, generated, resolved, gemini, xai, isbndb, ol, gb, queued = (int(v) for v in totals)
    books = candidate_totals(session)
    return StatsReport(
        total_months=months,
        by_status=status_counts(session),
        progress=Progress(
            total_books_generated=generated,
            total_isbns_resolved=resolved,
            overall_resolution_rate=_rate(resolved, generated),
            total_unresolved=books.unresolved,
            total_reresolved=books.reresolved,
            generator_calls_saved=books.generator_calls_saved,
            total_isbns_queued=queued,
        ),
        recent_activity=recent_activity(session),
        api_calls=ApiCalls(gemini=gemini, xai=xai, isbndb=isbndb, openlibrary=ol, googlebooks=gb),
        quota_today={
            name: QuotaToday(**info) for name, info in quota.daily_usage(session, settings).items()
        },
        paused=is_paused(session),
    )


def list_months(
    session: Session,
    *,
    status: str | None = None,
    year: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> MonthsPage:
    """Months filtered by status and/or year, newest first, one page at a time."""
    query = select(BackfillLog)
    if status is not None:
        query = query.where(BackfillLog.status == status)
    if year is not None:
        query = query.where(BackfillLog.year == year)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.scalars(
        query.order_by(BackfillLog.year.desc(), BackfillLog.month.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return MonthsPage(months=[month_row(r) for r in rows], total=total, limit=limit, offset=offset)


def month_detail(session: Session, row: BackfillLog) -> MonthDetail:
    """``row`` with its attempt history, the last error it recorded and its candidates."""
    attempts = session.scalars(
        select(MonthAttempt).where(MonthAttempt.backfill_id == row.id).order_by(MonthAttempt.id)
    ).all()
    history = [
        Attempt(
            attempt=a.attempt,
            job_id=str(a.job_id) if a.job_id else None,
            started_at=a.started_at,
            finished_at=a.finished_at,
            duration_seconds=float(a.duration_seconds) if a.duration_seconds is not None else None,
            outcome=a.outcome,
            error=a.error,
            worker=a.worker,
            gemini_calls=a.gemini_calls,
            xai_calls=a.xai_calls,
            isbndb_calls=a.isbndb_calls,
            openlibrary_calls=a.openlibrary_calls,
            googlebooks_calls=a.googlebooks_calls,
            tokens_in=a.tokens_in,
            tokens_out=a.tokens_out,
            books_generated=a.books_generated,
            isbns_resolved=a.isbns_resolved,
            invalid_isbns=a.invalid_isbns,
            generators_reused=a.generators_reused,
            model=a.model,
            prompt_version=a.prompt_version,
        )
        for a in attempts
    ]
    errors = [a.error for a in history if a.error]
    last_error = row.error_message or (errors[-1] if errors else None)
    return MonthDetail(
        month=month_row(row),
        attempts=history,
        last_error=last_error,
        candidates=month_candidates(session, row.id),
    )


def grid(session: Session) -> list[GridCell]:
    """Every month's status and yield, oldest first (the dashboard's grid)."""
    rows = session.scalars(select(BackfillLog).order_by(BackfillLog.year, BackfillLog.month))
    return [GridCell.of(row) for row in rows]
