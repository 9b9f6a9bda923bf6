"""Working a month's books again without paying twice: regenerate and re-resolve.

* :func:`regenerate` -- the operator asks for fresh generator lists: the month's
  stored answers and candidates are kept but marked superseded, and the month
  goes back to ``pending`` so the scheduler takes it again.
* :func:`reresolve` -- ``unresolved`` and ``pending`` candidates go through the
  resolution chain again (no LLM call), under the quotas, month by month, each
  under the month's advisory lock (a month a worker is processing is skipped).
  The month's counters are updated; a completed month stays completed. Beat runs
  it daily (``backfill.reresolve``).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from backfill import candidates, handoff, months, quota
from backfill.config import Settings, get_settings
from backfill.db import get_engine
from backfill.exceptions import ProviderError, QuotaExhausted
from backfill.models import BackfillLog, Candidate
from backfill.resolve import Clients, Resolver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Regenerated:
    """What :func:`regenerate` did."""

    month: str
    generations_superseded: int
    candidates_superseded: int
    status: str


def regenerate(session: Session, year: int, month: int) -> Regenerated:
    """Supersede the month's answers and candidates and reopen it (caller commits).

    Raises MonthNotFound, or MonthNotClaimable while a worker holds the month.
    """
    # First: reopen zeroes isbns_resolved, and isbns_queued may not exceed it.
    handoff.reset(session, year, month)
    row = months.reopen(session, year, month)
    generations, rows = candidates.supersede(session, row.id)
    log.info("%s: %d answers and %d candidates superseded", row.label, generations, rows)
    return Regenerated(row.label, generations, rows, row.status)


@dataclass
class Reresolved:
    """What one :func:`reresolve` run did."""

    months: list[str] = field(default_factory=list)
    tried: int = 0
    resolved: int = 0
    unresolved: int = 0
    pending: int = 0
    busy: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the run stopped early (quota spent, ISBNdb down)

    def as_json(self) -> dict[str, object]:
        return {
            "months": self.months,
            "tried": self.tried,
            "resolved": self.resolved,
            "unresolved": self.unresolved,
            "pending": self.pending,
            "busy": self.busy,
            "stopped": self.stopped,
        }


def _open(older_than: dt.timedelta | None) -> ColumnElement[bool]:
    query = Candidate.status.in_(candidates.OPEN) & Candidate.superseded_at.is_(None)
    if older_than is not None:
        cutoff = func.clock_timestamp() - older_than
        query = query & ((Candidate.last_tried_at.is_(None)) | (Candidate.last_tried_at < cutoff))
    return query


def months_to_reresolve(
    session: Session,
    month: tuple[int, int] | None = None,
    older_than: dt.timedelta | None = None,
) -> list[tuple[int, int, int]]:
    """(backfill_id, year, month) of months with open candidates, newest first."""
    query = (
        select(BackfillLog.id, BackfillLog.year, BackfillLog.month)
        .join(Candidate, Candidate.backfill_id == BackfillLog.id)
        .where(_open(older_than))
        .group_by(BackfillLog.id)
        .order_by(BackfillLog.year.desc(), BackfillLog.month.desc())
    )
    if month is not None:
        query = query.where(BackfillLog.year == month[0], BackfillLog.month == month[1])
    return [(int(r.id), int(r.year), int(r.month)) for r in session.execute(query)]


def reresolve(
    month: tuple[int, int] | None = None,
    older_than: dt.timedelta | None = None,
    settings: Settings | None = None,
) -> Reresolved:
    """Send open candidates through the chain again; owns its transactions.

    Stops early (and says why) when ISBNdb's quota is spent or ISBNdb stays down:
    what was found so far is kept, the rest waits for the next run.
    """
    settings = settings or get_settings()
    engine = get_engine(settings.database_url)
    result = Reresolved()
    with Session(engine) as session:
        todo = months_to_reresolve(session, month, older_than)
    for backfill_id, year, month_ in todo:
        label = f"{year:04d}-{month_:02d}"
        with engine.connect() as conn:
            if not months.try_lock(conn, backfill_id):
                result.busy.append(label)
                continue
            session = Session(bind=conn, expire_on_commit=False)
            try:
                stop = _one_month(session, backfill_id, year, month_, older_than, settings, result)
            finally:
                session.close()
                months.unlock(conn, backfill_id)
        result.months.append(label)
        if stop:
            result.stopped = stop
            break
    log.info("re-resolution: %s", result.as_json())
    return result


def _one_month(
    session: Session,
    backfill_id: int,
    year: int,
    month: int,
    older_than: dt.timedelta | None,
    settings: Settings,
    result: Reresolved,
) -> str | None:
    rows = list(
        session.scalars(
            select(Candidate)
            .where(Candidate.backfill_id == backfill_id, _open(older_than))
            .order_by(Candidate.id)
        )
    )
    clients = Clients.open(settings)
    stop: str | None = None
    try:
        with quota.charging(backfill_id):
            Resolver(
                session,
                settings,
                clients,
                year=year,
                month=month,
                checkpoint=session.commit,
                renew_lease=lambda: None,
                reresolving=True,
            ).run(rows)
    except (QuotaExhausted, ProviderError) as exc:
        stop = str(exc)[:500]
        log.warning("re-resolution of %04d-%02d stopped: %s", year, month, stop)
    finally:
        clients.close()
    counted = candidates.counts(session, backfill_id)
    months.record_counts(session, backfill_id, counted.books_generated, counted.isbns_resolved)
    session.commit()
    result.tried += len(rows)
    result.resolved += sum(1 for r in rows if r.status == "resolved")
    result.unresolved += sum(1 for r in rows if r.status == "unresolved")
    result.pending += sum(1 for r in rows if r.status == "pending")
    # Books found for a completed month go to enrichment too, after the commit
    # above (a failure is logged and left to the scheduler's sweep).
    handoff.hand_off_quietly(session, backfill_id, settings=settings)
    return stop
