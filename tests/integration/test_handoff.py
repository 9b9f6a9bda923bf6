"""The enrichment hand-off (``backfill.handoff``) on the real PostgreSQL and the
real RabbitMQ: batches of at most 100, the message contract, ``isbns_queued``,
a crash between publish and commit, a broker that is down, regeneration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill import handoff, months, rework
from backfill.broker import KombuHandoffPublisher
from backfill.config import load_settings
from backfill.db import get_engine
from backfill.models import BackfillLog, Handoff
from backfill.web import create_app
from tests.support.handoffutil import broker_url, drain, enrichment_queue, isbn
from tests.support.webutil import AUTH, add_candidate, add_month

DEAD_BROKER = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there


@pytest.fixture
def queue() -> Iterator[str]:
    with enrichment_queue() as name:
        yield name


@pytest.fixture
def publisher(queue: str) -> KombuHandoffPublisher:
    return KombuHandoffPublisher(broker_url(), queue)


def completed_month(
    session: Session, year: int, month: int, resolved: int, start: int = 0, **fields: object
) -> BackfillLog:
    """A completed month whose ``resolved`` candidates carry ISBNs isbn(start..)."""
    row = add_month(
        session, year, month, status="completed", books_generated=resolved + 2,
        isbns_resolved=resolved, **fields,
    )  # fmt: skip
    for n in range(start, start + resolved):
        add_candidate(session, row, f"Book {n}", "resolved", isbn13=isbn(n))
    add_candidate(session, row, "Not found anywhere", "unresolved")
    add_candidate(session, row, "Still waiting", "pending")
    return row


def batches(session: Session, row: BackfillLog) -> list[Handoff]:
    return list(
        session.scalars(select(Handoff).where(Handoff.backfill_id == row.id).order_by(Handoff.id))
    )


def test_a_completed_month_goes_out_in_batches_of_at_most_100(
    session: Session, publisher: KombuHandoffPublisher, queue: str
) -> None:
    row = completed_month(session, 2024, 5, 250)
    done = handoff.hand_off(session, row.id, publisher)
    assert (done.planned, done.sent, done.isbns_sent, done.failed) == (3, 3, 250, 0)

    messages = drain(queue)
    assert [len(m["body"]["isbns"]) for m in messages] == [100, 100, 50]
    for number, msg in enumerate(messages, start=1):
        body, props = msg["body"], msg["properties"]
        assert set(body) == {"isbns", "year", "month", "job_id", "batch"}
        assert (body["year"], body["month"], body["batch"]) == (2024, 5, number)
        assert body["isbns"] == sorted(body["isbns"])
        assert props["delivery_mode"] == 2 and props["content_type"] == "application/json"
        assert props["message_id"] == str(handoff.message_id_for(2024, 5, number, body["isbns"]))
    sent = [i for m in messages for i in m["body"]["isbns"]]
    assert sorted(sent) == [isbn(n) for n in range(250)]  # each resolved ISBN once
    session.refresh(row)
    assert row.isbns_queued == row.isbns_resolved == 250
    assert all(h.sent_at is not None and h.failures == 0 for h in batches(session, row))

    again = handoff.hand_off(session, row.id, publisher)  # nothing new: nothing sent
    assert (again.planned, again.sent) == (0, 0) and drain(queue) == []
    session.refresh(row)
    assert row.isbns_queued == 250


def test_the_job_id_in_the_body_is_the_month_s(
    session: Session, publisher: KombuHandoffPublisher, queue: str
) -> None:
    import uuid

    job = uuid.uuid4()
    row = completed_month(session, 2024, 6, 3, job_id=job)
    handoff.hand_off(session, row.id, publisher)
    (msg,) = drain(queue)
    assert msg["body"]["job_id"] == str(job)


def test_a_crash_between_publish_and_commit_resends_the_same_message_id(
    session: Session, publisher: KombuHandoffPublisher, queue: str
) -> None:
    row = completed_month(session, 2024, 5, 120)
    assert handoff.plan(session, row.id) == 2
    session.commit()
    # The process publishes both batches, then dies before recording them as sent.
    pending = [msg for _, msg in handoff._unsent(session, row.id)]
    assert publisher.publish(pending) == {}
    session.refresh(row)
    assert row.isbns_queued == 0  # nothing recorded: the count is not ahead of the truth

    # The next run (the sweep, or the month's next hand-off) re-sends them as they were.
    done = handoff.sweep(session, publisher)
    assert (done.planned, done.sent) == (0, 2)
    messages = drain(queue)
    assert len(messages) == 4
    ids = [m["properties"]["message_id"] for m in messages]
    assert ids[:2] == ids[2:] == [str(m.message_id) for m in pending]
    assert [m["body"] for m in messages[:2]] == [m["body"] for m in messages[2:]]
    session.refresh(row)
    assert row.isbns_queued == 120  # counted once


def test_a_batch_confirmed_twice_is_counted_once(
    session: Session, publisher: KombuHandoffPublisher
) -> None:
    row = completed_month(session, 2024, 5, 5)
    handoff.plan(session, row.id)
    session.commit()
    ((handoff_id, _msg),) = handoff._unsent(session, row.id)
    handoff._mark_sent(session, row.id, handoff_id)
    handoff._mark_sent(session, row.id, handoff_id)  # a second sender of the same batch
    session.refresh(row)
    assert row.isbns_queued == 5


def test_broker_down_leaves_the_month_completed_and_the_sweep_sends_later(
    session: Session, publisher: KombuHandoffPublisher, queue: str, app: Flask
) -> None:
    row = completed_month(session, 2024, 5, 7)
    down = KombuHandoffPublisher(DEAD_BROKER, queue, connect_timeout=1)
    done = handoff.hand_off_quietly(session, row.id, down)
    assert done is not None and (done.planned, done.sent, done.failed) == (1, 0, 1)
    session.refresh(row)
    assert (row.status, row.isbns_queued) == ("completed", 0)
    (batch,) = batches(session, row)
    assert batch.sent_at is None and batch.failures == 1
    assert "publish failed" in (batch.last_error or "")
    message_id = batch.message_id
    metrics = scrape(app)  # (the app closes the shared session: rows are read again below)
    assert metrics["backfill_handoff_failures_total"] == 1
    assert metrics["backfill_handoff_batches_unsent"] == 1
    assert metrics["backfill_isbns_queued_total"] == 0

    swept = handoff.sweep(session, publisher)  # the broker is back
    assert (swept.sent, swept.isbns_sent) == (1, 7)
    (msg,) = drain(queue)
    assert msg["properties"]["message_id"] == str(message_id)
    row = months.get(session, 2024, 5)
    assert row.isbns_queued == row.isbns_resolved == 7
    metrics = scrape(app)
    assert metrics["backfill_isbns_queued_total"] == 7
    assert metrics["backfill_handoff_batches_unsent"] == 0
    stats = app.test_client().get("/api/internal/backfill-stats", headers=AUTH).json
    assert stats["progress"]["total_isbns_queued"] == 7
    assert handoff.sweep(session, publisher).sent == 0  # nothing left: a cheap no-op


def test_only_completed_months_that_nobody_holds_are_planned(session: Session) -> None:
    working = completed_month(session, 2024, 5, 3)
    working.status = "processing"
    session.flush()
    assert handoff.plan(session, working.id) == 0
    held = completed_month(session, 2024, 6, 3, start=10)
    # A worker (another connection) holds the month's advisory lock.
    with get_engine().connect() as other:
        other.execute(text("SELECT pg_advisory_lock(:ns, :id)"), {"ns": 7301, "id": held.id})
        other.commit()
        assert handoff.plan(session, held.id) == 0
        other.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), {"ns": 7301, "id": held.id})
        other.commit()
    assert handoff.plan(session, held.id) == 1


def test_counters_behind_the_candidates_wait_instead_of_breaking_the_check(
    session: Session,
) -> None:
    row = completed_month(session, 2024, 5, 4)
    row.isbns_resolved = 2  # a run died between storing candidates and counting them
    session.flush()
    assert handoff.plan(session, row.id) == 0
    months.record_counts(session, row.id, 6, 4)  # the next recount
    assert handoff.plan(session, row.id) == 1


def test_books_resolved_later_are_handed_off_in_a_new_batch(
    session: Session, publisher: KombuHandoffPublisher, queue: str
) -> None:
    row = completed_month(session, 2024, 5, 3)
    handoff.hand_off(session, row.id, publisher)
    assert [m["body"]["batch"] for m in drain(queue)] == [1]
    # Re-resolution found two more (what rework.reresolve does, then its hook).
    for n in (50, 51):
        add_candidate(session, row, f"Found later {n}", "resolved", isbn13=isbn(n))
    months.record_counts(session, row.id, 7, 5)
    done = handoff.hand_off(session, row.id, publisher)
    (msg,) = drain(queue)
    assert done.sent == 1 and msg["body"]["batch"] == 2
    assert msg["body"]["isbns"] == [isbn(50), isbn(51)]
    session.refresh(row)
    assert row.isbns_queued == row.isbns_resolved == 5


def test_regenerate_resets_isbns_queued_and_keeps_the_history(
    session: Session, publisher: KombuHandoffPublisher, queue: str
) -> None:
    row = completed_month(session, 2024, 5, 3)
    handoff.hand_off(session, row.id, publisher)
    drain(queue)
    done = rework.regenerate(session, 2024, 5)  # the CHECK must not block the operator
    assert done.status == "pending"
    session.refresh(row)
    assert (row.isbns_queued, row.isbns_resolved) == (0, 0)
    (old,) = batches(session, row)
    assert old.superseded_at is not None and old.sent_at is not None  # kept, not counted
    # The fresh list, completed again, is handed off afresh, numbered on.
    for n in (0, 1):
        add_candidate(session, row, f"Again {n}", "resolved", isbn13=isbn(n))
    session.execute(update(BackfillLog).where(BackfillLog.id == row.id).values(status="completed"))
    months.record_counts(session, row.id, 2, 2)
    handoff.hand_off(session, row.id, publisher)
    (msg,) = drain(queue)
    assert msg["body"]["batch"] == 2 and msg["body"]["isbns"] == [isbn(0), isbn(1)]
    assert msg["properties"]["message_id"] != str(old.message_id)
    session.refresh(row)
    assert row.isbns_queued == 2


def test_the_table_refuses_more_queued_than_resolved(session: Session) -> None:
    row = add_month(session, 2024, 5, status="completed", books_generated=3, isbns_resolved=2)
    for bad in (3, -1):
        savepoint = session.begin_nested()
        with pytest.raises(IntegrityError):
            session.execute(
                update(BackfillLog).where(BackfillLog.id == row.id).values(isbns_queued=bad)
            )
        savepoint.rollback()


def test_an_empty_enrichment_queue_turns_the_hand_off_off(session: Session) -> None:
    row = completed_month(session, 2024, 5, 3)
    off = load_settings(enrichment_queue="")
    assert handoff.default_publisher(off) is None
    assert handoff.hand_off(session, row.id, settings=off).planned == 0
    assert handoff.sweep(session, settings=off).sent == 0
    assert session.scalar(select(func.count()).select_from(Handoff)) == 0


# -- helpers that need the app


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


def scrape(app: Flask) -> dict[str, float]:
    text_ = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text_)
        for s in family.samples
        if not s.labels
    }


def test_the_beat_s_schedule_task_sweeps_what_is_left(
    committed_db: str, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backfill.db import transaction
    from backfill.tasks import schedule_task

    with transaction(committed_db) as s:
        row = completed_month(s, 2024, 5, 4)
        row_id = row.id
    # As if the worker's own hand-off never happened (it died right after completing).
    monkeypatch.setattr(
        handoff, "default_publisher", lambda settings: KombuHandoffPublisher(broker_url(), queue)
    )
    summary = schedule_task(batch_size=1, year_range=[1990, 1990])  # nothing to claim
    assert summary["handoff"] == {"sent": 1, "failed": 0}
    (msg,) = drain(queue)
    assert len(msg["body"]["isbns"]) == 4
    with transaction(committed_db) as s:
        assert s.get(BackfillLog, row_id).isbns_queued == 4  # type: ignore[union-attr]
