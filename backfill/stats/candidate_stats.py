"""Read-only numbers about candidates: a month's list, and the totals the stats,
the dashboard and ``/metrics`` show (unresolved, re-resolved, generator calls saved)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backfill import candidates
from backfill.constants import CANDIDATE_STATUSES
from backfill.models import Candidate, MonthAttempt
from backfill.stats.reports import CandidateOut


@dataclass(frozen=True)
class CandidateTotals:
    """Candidate numbers over the whole backfill."""

    # current (not superseded) candidates by status; every status present
    by_status: dict[str, int]
    # resolved by re-resolution, all time: superseding a month does not undo that work
    reresolved: int
    # generator calls not made because a stored answer was reused (month_attempts)
    generator_calls_saved: int

    @property
    def unresolved(self) -> int:
        return self.by_status.get("unresolved", 0)


def candidate_totals(session: Session) -> CandidateTotals:
    """Count candidates by status, those re-resolution found, and the calls reuse saved."""
    by_status = dict.fromkeys(CANDIDATE_STATUSES, 0)
    rows = session.execute(
        select(Candidate.status, func.count())
        .where(Candidate.superseded_at.is_(None))
        .group_by(Candidate.status)
    )
    for status, n in rows:
        by_status[str(status)] = int(n)
    reresolved = session.scalar(
        select(func.count()).select_from(Candidate).where(Candidate.reresolved.is_(True))
    )
    saved = session.scalar(select(func.coalesce(func.sum(MonthAttempt.generators_reused), 0)))
    return CandidateTotals(by_status, int(reresolved or 0), int(saved or 0))


def month_candidates(session: Session, backfill_id: int) -> list[CandidateOut]:
    """The month's current candidates as the API shows them (resolved first)."""
    return [
        CandidateOut.model_validate(view)
        for view in candidates.list_for_month(session, backfill_id)
    ]
