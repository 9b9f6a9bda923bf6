"""The enrichment hand-off: a completed month's resolved ISBNs to ``ENRICHMENT_QUEUE``.

A month's hand-off is three steps, each its own transaction, so a crash anywhere
re-sends a batch rather than losing or double-counting it:

1. **plan** -- under the month's row lock, the resolved ISBNs of a *completed*
   month that are in none of its current batches become new ``handoffs`` rows of
   at most 100 ISBNs, each with a ``message_id`` derived from its content; COMMIT.
2. **publish** every unsent current batch of the month (publisher confirms), with
   its stored ``message_id`` and body -- the very same message after a crash.
3. **mark** each confirmed batch ``sent_at`` and recount the month's
   ``isbns_queued`` from its sent current batches, in one transaction; a failed
   publish adds to the batch's ``failures`` instead, and the scheduler task's
   sweep (every beat) tries it again.

Like :func:`backfill.scheduler.schedule`, these functions own their commits,
because a publish must follow the commit of the row it refers to. Callers
(runner, re-resolution, the scheduler task) call them after the month's own
commit, so a hand-off failure never touches the month's status.

Planning also takes the month's advisory lock for the transaction: a worker or a
re-resolution run holding the month (re-entrant for them, on their connection)
is in the middle of changing its candidates and counters, and hands the month
off itself when done. That keeps ``isbns_queued <= isbns_resolved`` true.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.orm import Session

from backfill import months
from backfill.broker import HandoffMessage, HandoffPublisher, KombuHandoffPublisher
from backfill.config import Settings, get_settings
from backfill.models import BackfillLog, Candidate, Handoff
from backfill.months import LOCK_NAMESPACE, get

log = logging.getLogger(__name__)

BATCH_MAX = 100  # ISBNs per message, the original system's batch size
SWEEP_MONTHS = 50  # months the scheduler task's sweep takes per beat
# Fixed namespace of the message ids: uuid5(namespace, "YYYY-MM/batch/isbn,isbn,...").
MESSAGE_NAMESPACE = uuid.UUID("6f1d7c3e-2b1a-5e8f-9a4c-0d3b7e5f1a20")


@dataclass
class HandoffResult:
    """What one hand-off (or one sweep) did."""

    planned: int = 0  # batches created
    sent: int = 0  # batches the broker confirmed
    isbns_sent: int = 0
    failed: int = 0  # batches whose publish failed (they stay unsent)
    errors: list[str] = field(default_factory=list)

    def add(self, other: HandoffResult) -> None:
        self.planned += other.planned
        self.sent += other.sent
        self.isbns_sent += other.isbns_sent
        self.failed += other.failed
        self.errors += other.errors


def message_id_for(year: int, month: int, batch: int, isbns: list[str]) -> uuid.UUID:
    """The stable id of one batch: the same month, batch number and ISBNs, the same id."""
    name = f"{year:04d}-{month:02d}/{batch}/{','.join(sorted(isbns))}"
    return uuid.uuid5(MESSAGE_NAMESPACE, name)


def default_publisher(settings: Settings) -> HandoffPublisher | None:
    """The kombu publisher for ``ENRICHMENT_QUEUE``, or None when the hand-off is off."""
    if not settings.enrichment_queue:
        return None
    return KombuHandoffPublisher(settings.celery_broker_url, settings.enrichment_queue)


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _current(backfill_id: int) -> list[ColumnElement[bool]]:
    """The month's batches that count (not superseded by a regeneration)."""
    return [Handoff.backfill_id == backfill_id, Handoff.superseded_at.is_(None)]


def plan(session: Session, backfill_id: int) -> int:
    """Create the batches of the month's resolved ISBNs not handed off yet; returns
    how many. Does nothing unless the month is completed and nobody else holds it.
    The caller commits."""
    row = session.get(BackfillLog, backfill_id, with_for_update=True, populate_existing=True)
    if row is None or row.status != "completed":
        return 0
    free = session.scalar(select(func.pg_try_advisory_xact_lock(LOCK_NAMESPACE, backfill_id)))
    if not free:
        return 0  # a worker or re-resolution holds it, and hands it off when done
    handed = select(func.unnest(Handoff.isbns)).where(*_current(backfill_id))
    new = list(
        session.scalars(
            select(Candidate.isbn13)
            .where(
                Candidate.backfill_id == backfill_id,
                Candidate.status == "resolved",
                Candidate.superseded_at.is_(None),
                Candidate.isbn13.not_in(handed),
            )
            .distinct()
            .order_by(Candidate.isbn13)
        )
    )
    if not new:
        return 0
    already = session.scalar(select(func.count()).select_from(handed.distinct().subquery())) or 0
    if already + len(new) > row.isbns_resolved:
        # The counters lag the candidates (a run died between the two): counting
        # these would break isbns_queued <= isbns_resolved. The month's next
        # completion or re-resolution recounts it, and the sweep comes back.
        log.warning(
            "%s: %d resolved ISBNs not handed off but isbns_resolved is %d; waiting",
            row.label,
            already + len(new),
            row.isbns_resolved,
        )
        return 0
    last = session.scalar(
        select(func.coalesce(func.max(Handoff.batch), 0)).where(Handoff.backfill_id == backfill_id)
    )
    batches = list(_chunks([str(isbn) for isbn in new], BATCH_MAX))
    for number, isbns in enumerate(batches, start=int(last or 0) + 1):
        session.add(
            Handoff(
                backfill_id=backfill_id,
                batch=number,
                message_id=message_id_for(row.year, row.month, number, isbns),
                job_id=row.job_id,
                isbns=isbns,
            )
        )
    session.flush()
    log.info("%s: %d ISBNs in %d hand-off batches", row.label, len(new), len(batches))
    return len(batches)


def _unsent(session: Session, backfill_id: int) -> list[tuple[int, HandoffMessage]]:
    rows = session.execute(
        select(Handoff, BackfillLog.year, BackfillLog.month)
        .join(BackfillLog, BackfillLog.id == Handoff.backfill_id)
        .where(*_current(backfill_id), Handoff.sent_at.is_(None))
        .order_by(Handoff.batch)
    ).all()
    return [
        (
            h.id,
            HandoffMessage(h.message_id, year, month, h.job_id, h.batch, tuple(h.isbns)),
        )
        for h, year, month in rows
    ]


def _mark_sent(session: Session, backfill_id: int, handoff_id: int) -> None:
    # The month row first: the lock order regenerate uses too (no deadlock).
    session.execute(select(BackfillLog.id).where(BackfillLog.id == backfill_id).with_for_update())
    session.execute(
        update(Handoff)
        .where(Handoff.id == handoff_id, Handoff.sent_at.is_(None))
        .values(sent_at=func.clock_timestamp())
    )
    # A recount, not an increment: a batch confirmed twice (two senders) counts once.
    # Plain SQL on purpose: the hand-off is not a change of the month's state, so
    # backfill_log.updated_at stays as the month's last transition left it.
    months.recount_queued(session, backfill_id)


def send(session: Session, backfill_id: int, publisher: HandoffPublisher) -> HandoffResult:
    """Publish the month's unsent current batches and record each outcome (commits)."""
    result = HandoffResult()
    pending = _unsent(session, backfill_id)
    session.commit()  # nothing is held while the broker is asked
    if not pending:
        return result
    errors = publisher.publish([msg for _, msg in pending])
    for handoff_id, msg in pending:
        error = errors.get(msg.message_id)
        if error is None:
            _mark_sent(session, backfill_id, handoff_id)
            result.sent += 1
            result.isbns_sent += len(msg.isbns)
        else:
            session.execute(
                update(Handoff)
                .where(Handoff.id == handoff_id)
                .values(failures=Handoff.failures + 1, last_error=error[:2000])
            )
            result.failed += 1
            result.errors.append(f"{msg.year:04d}-{msg.month:02d} batch {msg.batch}: {error}")
        session.commit()
    if result.failed:
        log.warning("hand-off: %d batches not sent, retried later: %s", result.failed, errors)
    return result


def hand_off(
    session: Session,
    backfill_id: int,
    publisher: HandoffPublisher | None = None,
    settings: Settings | None = None,
) -> HandoffResult:
    """Plan and send one month's hand-off (commits); a no-op when it is turned off."""
    publisher = publisher or default_publisher(settings or get_settings())
    if publisher is None:
        return HandoffResult()
    planned = plan(session, backfill_id)
    session.commit()  # the batches exist before any message does
    result = send(session, backfill_id, publisher)
    result.planned = planned
    return result


def hand_off_quietly(
    session: Session,
    backfill_id: int,
    publisher: HandoffPublisher | None = None,
    settings: Settings | None = None,
) -> HandoffResult | None:
    """:func:`hand_off` for callers whose own work is already committed: any error
    (database or broker) is logged and left to the scheduler task's sweep."""
    try:
        return hand_off(session, backfill_id, publisher, settings)
    except Exception as exc:
        session.rollback()
        log.warning("hand-off of month id %d failed, the sweep retries it: %r", backfill_id, exc)
        return None


# Completed months with something to hand off: an unsent current batch, or a
# resolved ISBN in none of the current batches (counted short, so it is cheap
# once every month is handed off).
_TO_SWEEP = text(
    "SELECT b.id FROM backfill_log b WHERE b.status = 'completed' AND ("
    " EXISTS (SELECT 1 FROM handoffs h WHERE h.backfill_id = b.id"
    "   AND h.sent_at IS NULL AND h.superseded_at IS NULL)"
    " OR (b.isbns_queued < b.isbns_resolved AND EXISTS ("
    "   SELECT 1 FROM candidates c WHERE c.backfill_id = b.id AND c.status = 'resolved'"
    "   AND c.superseded_at IS NULL AND NOT EXISTS ("
    "     SELECT 1 FROM handoffs h WHERE h.backfill_id = b.id AND h.superseded_at IS NULL"
    "     AND c.isbn13 = ANY (h.isbns)))))"
    " ORDER BY b.id LIMIT :limit"
)


def sweep(
    session: Session,
    publisher: HandoffPublisher | None = None,
    settings: Settings | None = None,
    limit: int = SWEEP_MONTHS,
) -> HandoffResult:
    """Hand off what earlier hand-offs left (broker down, a crash after completion)."""
    result = HandoffResult()
    publisher = publisher or default_publisher(settings or get_settings())
    if publisher is None:
        return result
    ids = [int(i) for i in session.scalars(_TO_SWEEP, {"limit": limit})]
    session.commit()
    for backfill_id in ids:
        result.add(hand_off(session, backfill_id, publisher))
        if result.failed and not result.sent:
            break  # the broker is down: the next beat tries again
    return result


def reset(session: Session, year: int, month: int) -> int:
    """Before a month is regenerated: its batches superseded (kept as history) and
    ``isbns_queued`` back to 0 with the other counters, so the CHECK never blocks
    the operator. Its next completion hands its new list off afresh, in batches
    numbered on from the old ones (new message ids). The caller commits."""
    row = get(session, year, month, lock=True)
    superseded = session.execute(
        update(Handoff).where(*_current(row.id)).values(superseded_at=func.clock_timestamp())
    )
    months.reset_queued(session, row.id)
    return int(superseded.rowcount)  # type: ignore[attr-defined]
