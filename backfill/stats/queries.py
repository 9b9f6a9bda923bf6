"""Read-only queries: stats, month lists, month detail, the dashboard grid."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from backfill import quota
from backfill.config import Settings, get_settings
from backfill.control import is_paused
from backfill.models import STATUSES, BackfillLog, MonthAttempt
from backfill.stats.candidate_stats import candidate_totals, month_candidates
from backfill.stats.reports import (
    RECENT_ACTIVITY_LIMIT,
    Activity,
    ApiCalls,
    Attempt,
    GridCell,
    MonthDetail,
    MonthRow,
    MonthsPage,
    Progress,
    QuotaToday,
    StatsReport,
    StatusCounts,
)

FINISHED_STATUSES = ("completed", "failed", "retry")


def _rate(resolved: int, generated: int) -> float:
    """Resolution rate in percent, two decimals; 0 when nothing was generated."""
    return round(resolved * 100.0 / generated, 2) if generated else 0.0


def month_row(row: BackfillLog) -> MonthRow:
    """The API view of a ``backfill_log`` row."""
    return MonthRow(
        year=row.year,
        month=row.month,
        label=row.label,
        status=row.status,
        prompt_variant=row.prompt_variant,
        batch_size=row.batch_size,
        retry_count=row.retry_count,
        attempts=row.attempts,
        books_generated=row.books_generated,
        isbns_resolved=row.isbns_resolved,
        isbns_queued=row.isbns_queued,
        resolution_rate=float(row.resolution_rate or Decimal(0)),
        gemini_calls=row.gemini_calls,
        xai_calls=row.xai_calls,
        isbndb_calls=row.isbndb_calls,
        openlibrary_calls=row.openlibrary_calls,
        googlebooks_calls=row.googlebooks_calls,
        started_at=row.started_at,
        completed_at=row.completed_at,
        last_retry_at=row.last_retry_at,
        error_message=row.error_message,
        job_id=str(row.job_id) if row.job_id else None,
        lease_expires_at=row.lease_expires_at,
        not_before=row.not_before,
        updated_at=row.updated_at,
    )


def status_counts(session: Session) -> StatusCounts:
    """How many months are in each status."""
    rows = session.execute(
        select(BackfillLog.status, func.count()).group_by(BackfillLog.status)
    ).all()
    counts = {status: int(n) for status, n in rows if status in STATUSES}
    return StatusCounts(**counts)


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
    return [
        Activity(
            year=row.year,
            month=row.month,
            status=row.status,
            books_generated=row.books_generated,
            isbns_resolved=row.isbns_resolved,
            resolution_rate=float(row.resolution_rate or 0),
            error_message=row.error_message,
            isbns_queued=row.isbns_queued,
            finished_at=when,
        )
        for row, when in rows
    ]


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
    return [
        GridCell(
            year=r.year,
            month=r.month,
            status=r.status,
            books_generated=r.books_generated,
            isbns_resolved=r.isbns_resolved,
            resolution_rate=float(r.resolution_rate or 0),
        )
        for r in rows
    ]


def last_schedule_at(session: Session) -> dt.datetime | None:
    """When the scheduler last ran successfully (``control_state['last_schedule']``)."""
    value: Any = session.execute(
        text("SELECT value FROM control_state WHERE key = 'last_schedule'")
    ).scalar()
    at = value.get("at") if isinstance(value, dict) else None
    if not isinstance(at, str):
        return None
    try:
        when = dt.datetime.fromisoformat(at)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
