"""Seeding, candidate selection and claiming: real PostgreSQL, real RabbitMQ."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from backfill import months, scheduler
from backfill.broker import CeleryPublisher
from backfill.config import load_settings
from backfill.db import session_factory
from backfill.exceptions import InvalidInput
from backfill.models import BackfillLog, ControlState, MonthAttempt
from tests.conftest import purge_queue
from tests.support.brokerutil import drain


def labels(result: scheduler.ScheduleResult) -> list[str]:
    return [m.label for m in result.months]


def set_month(session: Session, year: int, month: int, **values: object) -> None:
    session.execute(
        update(BackfillLog)
        .where(BackfillLog.year == year, BackfillLog.month == month)
        .values(**values)
    )


@pytest.fixture
def seeded(session: Session) -> Session:
    scheduler.seed_months(session, 2000, 2024)
    return session


@pytest.fixture
def published(queue_name: str):  # type: ignore[no-untyped-def]
    """Messages published during the test (the queue is emptied before and after)."""
    purge_queue(queue_name)
    yield lambda: drain(queue_name)
    purge_queue(queue_name)


# -- seeding


def test_seed_inserts_300_months_with_variants_and_is_idempotent(session: Session) -> None:
    first = scheduler.seed_months(session)
    assert (first.inserted, first.existing) == (300, 0)
    rows = session.scalars(select(BackfillLog)).all()
    assert len(rows) == 300
    assert {r.status for r in rows} == {"pending"} and {r.batch_size for r in rows} == {20}
    assert all(r.prompt_variant == "contemporary-notable" for r in rows if r.year >= 2020)
    assert all(r.prompt_variant == "baseline" for r in rows if r.year < 2020)
    inserted, existing = scheduler.seed_months(session)  # unpacks like a pair
    assert (inserted, existing) == (0, 300)
    assert session.scalar(select(func.count()).select_from(BackfillLog)) == 300


def test_seed_overlapping_range_counts_inserted_and_existing(session: Session) -> None:
    scheduler.seed_months(session, 2020, 2021)
    result = scheduler.seed_months(session, 2021, 2022)
    assert (result.inserted, result.existing) == (12, 12)


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [(2024, 2000, "year_end"), (1899, 2000, "year_start"), (2000, 2101, "year_end")],
)
def test_seed_rejects_reversed_or_absurd_ranges(
    session: Session, start: int, end: int, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        scheduler.seed_months(session, start, end)
    assert info.value.field == field
    assert session.scalar(select(func.count()).select_from(BackfillLog)) == 0


# -- candidate selection (dry run: nothing changes)


def test_candidates_newest_first_limited_to_batch_size(seeded: Session) -> None:
    result = scheduler.schedule(seeded, batch_size=5, dry_run=True)
    assert labels(result) == ["2024-12", "2024-11", "2024-10", "2024-09", "2024-08"]


def test_default_range_is_2024_down_to_2000(seeded: Session) -> None:
    scheduler.seed_months(seeded, 2025, 2025)
    scheduler.seed_months(seeded, 1999, 1999)
    result = scheduler.schedule(seeded, batch_size=50, dry_run=True)
    assert {m.year for m in result.months} == {2024, 2023, 2022, 2021, 2020}
    seeded.execute(update(BackfillLog).where(BackfillLog.year >= 2001).values(status="completed"))
    result = scheduler.schedule(seeded, batch_size=50, dry_run=True)
    assert {m.year for m in result.months} == {2000}  # 1999 is outside the default range


@pytest.mark.parametrize("year_range", [(2010, 2011), (2011, 2010)])
def test_year_range_restricts_in_either_order(seeded: Session, year_range: tuple[int, int]) -> None:
    result = scheduler.schedule(seeded, batch_size=50, dry_run=True, year_range=year_range)
    assert len(result.months) == 24
    assert labels(result)[0] == "2011-12" and labels(result)[-1] == "2010-01"


def test_completed_months_never_candidates(seeded: Session) -> None:
    set_month(seeded, 2024, 12, status="completed")
    assert "2024-12" not in labels(scheduler.schedule(seeded, 50, dry_run=True))
    assert "2024-12" not in labels(scheduler.schedule(seeded, 50, dry_run=True, force_retry=True))


def test_retry_months_are_candidates_until_budget_spent(seeded: Session) -> None:
    set_month(seeded, 2024, 12, status="retry", retry_count=4)
    set_month(seeded, 2024, 11, status="retry", retry_count=5)
    result = labels(scheduler.schedule(seeded, 50, dry_run=True))
    assert "2024-12" in result and "2024-11" not in result


def test_failed_months_only_with_force_retry(seeded: Session) -> None:
    set_month(seeded, 2024, 12, status="failed", retry_count=5, error_message="boom")
    assert "2024-12" not in labels(scheduler.schedule(seeded, 50, dry_run=True))
    assert labels(scheduler.schedule(seeded, 1, dry_run=True, force_retry=True)) == ["2024-12"]


def test_force_retry_resets_the_retry_budget(seeded: Session, published) -> None:  # type: ignore[no-untyped-def]
    set_month(seeded, 2024, 12, status="failed", retry_count=5, error_message="boom")
    result = scheduler.schedule(seeded, batch_size=1, force_retry=True)
    assert labels(result) == ["2024-12"]
    row = months.get(seeded, 2024, 12)
    assert (row.status, row.retry_count) == ("processing", 0)
    assert len(published()) == 1


def test_live_lease_excluded(seeded: Session) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    set_month(seeded, 2024, 12, status="retry", lease_expires_at=future, retry_count=1)
    assert "2024-12" not in labels(scheduler.schedule(seeded, 50, dry_run=True))


def test_not_before_in_future_excluded(seeded: Session) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    set_month(seeded, 2024, 12, not_before=future)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    set_month(seeded, 2024, 11, not_before=past)
    result = labels(scheduler.schedule(seeded, 2, dry_run=True))
    assert result == ["2024-11", "2024-10"]


def test_settle_window_excludes_the_most_recent_months(session: Session) -> None:
    now = session.scalar(select(func.now()))
    assert now is not None
    scheduler.seed_months(session, now.year - 1, now.year)
    settings = load_settings(settle_months=3)
    result = scheduler.schedule(
        session, 50, dry_run=True, year_range=(now.year - 1, now.year), settings=settings
    )
    newest = result.months[0]
    months_ago = (now.year * 12 + now.month) - (newest.year * 12 + newest.month)
    assert months_ago == 3
    result = scheduler.schedule(
        session,
        50,
        dry_run=True,
        year_range=(now.year - 1, now.year),
        settings=load_settings(settle_months=0),
    )
    assert (result.months[0].year, result.months[0].month) == (now.year, now.month)


def test_dry_run_changes_nothing_and_publishes_nothing(seeded: Session, published) -> None:  # type: ignore[no-untyped-def]
    before = seeded.execute(
        text("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM backfill_log b")
    ).scalar()
    result = scheduler.schedule(seeded, batch_size=10, dry_run=True)
    assert result.dry_run and len(result.months) == 10 and result.triggered == 0
    after = seeded.execute(
        text("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM backfill_log b")
    ).scalar()
    assert before == after
    assert seeded.scalar(select(func.count()).select_from(MonthAttempt)) == 0
    assert published() == []


def test_dry_run_lists_a_lost_month_a_real_run_would_take_back(
    seeded: Session,
    published,  # type: ignore[no-untyped-def]
) -> None:
    import uuid

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    set_month(seeded, 2024, 12, status="processing", job_id=uuid.uuid4(), lease_expires_at=past)
    before = seeded.execute(
        text("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM backfill_log b")
    ).scalar()
    dry = scheduler.schedule(seeded, batch_size=2, dry_run=True)
    assert labels(dry) == ["2024-12", "2024-11"]
    after = seeded.execute(
        text("SELECT md5(string_agg(b::text, ',' ORDER BY id)) FROM backfill_log b")
    ).scalar()
    assert before == after and published() == []
    real = scheduler.schedule(seeded, batch_size=2)
    assert labels(real) == labels(dry)


@pytest.mark.parametrize("bad", [0, 51, -1, "10", 1.5, True, None])
def test_batch_size_must_be_an_integer_from_1_to_50(seeded: Session, bad: object) -> None:
    with pytest.raises(InvalidInput) as info:
        scheduler.schedule(seeded, batch_size=bad, dry_run=True)  # type: ignore[arg-type]
    assert info.value.field == "batch_size"


def test_empty_candidate_list_is_quiet(session: Session, published) -> None:  # type: ignore[no-untyped-def]
    result = scheduler.schedule(session, batch_size=10)
    assert (result.months, result.triggered, result.errors) == ([], 0, [])
    assert published() == []


# -- claiming and publishing


def test_claim_marks_processing_and_publishes_one_message_per_month(
    seeded: Session,
    published,  # type: ignore[no-untyped-def]
) -> None:
    set_month(seeded, 2024, 12, completed_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    result = scheduler.schedule(seeded, batch_size=3)
    assert labels(result) == ["2024-12", "2024-11", "2024-10"]
    assert result.triggered == 3 and result.errors == []
    assert [m.label for m in result.dispatched] == labels(result)
    rows = {
        r.label: r
        for r in seeded.scalars(select(BackfillLog).where(BackfillLog.status == "processing"))
    }
    assert set(rows) == {"2024-12", "2024-11", "2024-10"}
    for row in rows.values():
        assert row.job_id and row.started_at and row.lease_expires_at > row.started_at
        assert row.completed_at is None  # cleared when a month is re-run
    messages = published()
    assert len(messages) == 3
    for msg in messages:
        assert msg["task"] == "backfill.process_month"
        kw = msg["kwargs"]
        assert set(kw) == {"job_id", "year", "month", "batch_size"}
        row = rows[f"{kw['year']:04d}-{kw['month']:02d}"]
        assert kw["job_id"] == str(row.job_id) and kw["batch_size"] == 20
        assert result.job_ids[row.label] == kw["job_id"]
    attempts = seeded.scalars(select(MonthAttempt)).all()
    assert len(attempts) == 3 and {a.outcome for a in attempts} == {"running"}
    last = seeded.scalar(select(ControlState.value).where(ControlState.key == "last_schedule"))
    assert last and last["claimed"] == 3


def test_paused_scheduler_dispatches_nothing(seeded: Session, published) -> None:  # type: ignore[no-untyped-def]
    scheduler.set_paused(seeded, True)
    result = scheduler.schedule(seeded, batch_size=5)
    assert result.paused and result.triggered == 0 and published() == []
    scheduler.set_paused(seeded, False)
    assert scheduler.schedule(seeded, batch_size=5).triggered == 5


def test_expired_lease_is_taken_back_as_one_failed_attempt(seeded: Session, published) -> None:  # type: ignore[no-untyped-def]
    import uuid

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    lost_job = uuid.uuid4()
    set_month(seeded, 2024, 12, status="processing", job_id=lost_job, lease_expires_at=past)
    row = months.get(seeded, 2024, 12)
    seeded.add(MonthAttempt(backfill_id=row.id, job_id=lost_job, attempt=1, worker="w1"))
    result = scheduler.schedule(seeded, batch_size=1)
    assert result.reaped == ["2024-12:retry"]
    seeded.refresh(row)
    # reaped (retry_count 1), then claimed again by this very run
    assert row.retry_count == 1 and row.status == "processing" and row.job_id != lost_job
    outcomes = [a.outcome for a in scheduler.attempts_of(seeded, row)]
    assert outcomes == ["lost", "running"]
    assert len(published()) == 1


def test_publish_failure_defers_without_spending_a_retry(seeded: Session) -> None:
    """A publish the broker did not take is the broker's fault (issue 13 §4): the
    month goes back to waiting for a moment, its attempt closed ``deferred`` with
    the error, and no retry is spent however many beats fail."""
    publisher = CeleryPublisher(broker_url="amqp://guest:guest@127.0.0.1:1//")  # nothing listens
    settings = load_settings(beat_interval_seconds=5)
    for _ in range(6):
        set_month(seeded, 2024, 12, not_before=None)  # as if the short wait were over
        result = scheduler.schedule(
            seeded, batch_size=1, year_range=(2024, 2024), publisher=publisher, settings=settings
        )
        assert labels(result) == ["2024-12"]
        assert result.triggered == 0 and len(result.errors) == 1
        assert result.dispatched == [] and result.job_ids == {}
        assert [m.status for m in result.months] == ["pending"]
        row = months.get(seeded, 2024, 12)
        seeded.refresh(row)
        assert (row.status, row.retry_count, row.last_retry_at) == ("pending", 0, None)
        assert "publish failed" in (row.error_message or "")
        assert row.job_id is None and row.lease_expires_at is None
        wait = (row.not_before - scheduler.months.db_now(seeded)).total_seconds()
        assert 0 < wait <= 10  # two beats: the next run leaves it alone, a later one retries
    attempts = scheduler.attempts_of(seeded, row)
    assert [a.outcome for a in attempts] == ["deferred"] * 6
    assert all("publish failed" in (a.error or "") for a in attempts)
    # deferred for a moment: the next run moves on to the next month
    result = scheduler.schedule(
        seeded, batch_size=1, year_range=(2024, 2024), publisher=publisher, settings=settings
    )
    assert labels(result) == ["2024-11"]


def test_publish_failure_of_a_retry_month_keeps_its_status_and_count(seeded: Session) -> None:
    publisher = CeleryPublisher(broker_url="amqp://guest:guest@127.0.0.1:1//")
    set_month(seeded, 2024, 12, status="retry", retry_count=2)
    result = scheduler.schedule(seeded, batch_size=1, year_range=(2024, 2024), publisher=publisher)
    assert [(m.status, m.retry_count) for m in result.months] == [("retry", 2)]
    assert result.totals["retry"] == 1 and result.totals["processing"] == 0


# -- BACKFILL_MAX_RETRIES lowered: a retry month at or above the new limit is failed


def test_months_out_of_budget_after_lowering_the_limit_are_failed(
    seeded: Session,
    published,  # type: ignore[no-untyped-def]
) -> None:
    set_month(seeded, 2024, 12, status="retry", retry_count=4, error_message="xai: timeout")
    set_month(seeded, 2024, 11, status="retry", retry_count=2)
    set_month(seeded, 2024, 10, status="retry", retry_count=1)
    lowered = load_settings(max_retries=2)
    dry = scheduler.schedule(seeded, 50, dry_run=True, year_range=(2024, 2024), settings=lowered)
    assert "2024-12" not in labels(dry) and "2024-11" not in labels(dry)
    assert labels(dry)[0] == "2024-10"
    forced = scheduler.schedule(
        seeded, 3, dry_run=True, year_range=(2024, 2024), force_retry=True, settings=lowered
    )
    assert labels(forced) == ["2024-12", "2024-11", "2024-10"]
    assert [m.status for m in forced.months[:2]] == ["failed", "failed"]  # shown as such
    # a real run marks them failed (totals, stats and the API see it) and claims others
    result = scheduler.schedule(seeded, 1, year_range=(2024, 2024), settings=lowered)
    assert result.settled == ["2024-12", "2024-11"] and labels(result) == ["2024-10"]
    assert result.totals["failed"] == 2
    row = months.get(seeded, 2024, 12)
    seeded.refresh(row)
    assert (row.status, row.retry_count) == ("failed", 4)
    assert "xai: timeout" in (row.error_message or "") and "budget spent" in row.error_message
    # force_retry takes them with a fresh budget
    result = scheduler.schedule(
        seeded, 2, year_range=(2024, 2024), force_retry=True, settings=lowered
    )
    assert labels(result) == ["2024-12", "2024-11"]
    assert [(m.status, m.retry_count) for m in result.months] == [("processing", 0)] * 2
    assert len(published()) == 3


def test_force_retry_claims_a_stranded_retry_month_with_a_fresh_budget(
    seeded: Session,
    published,  # type: ignore[no-untyped-def]
) -> None:
    """Even in the same run that finds it out of budget."""
    set_month(seeded, 2024, 12, status="retry", retry_count=3)
    lowered = load_settings(max_retries=3)
    result = scheduler.schedule(
        seeded, 1, year_range=(2024, 2024), force_retry=True, settings=lowered
    )
    assert labels(result) == ["2024-12"]
    assert (result.months[0].status, result.months[0].retry_count) == ("processing", 0)
    assert len(published()) == 1


# -- a dry run lists what a real run would claim now: nothing while paused or blocked


def test_dry_run_while_paused_lists_nothing_and_says_why(seeded: Session) -> None:
    scheduler.set_paused(seeded, True)
    dry = scheduler.schedule(seeded, batch_size=5, dry_run=True)
    assert dry.months == [] and dry.paused and dry.reason == "paused"
    assert dry.totals["pending"] == 300
    scheduler.set_paused(seeded, False)
    dry = scheduler.schedule(seeded, batch_size=5, dry_run=True)
    assert len(dry.months) == 5 and dry.reason is None


def test_dry_run_while_a_quota_is_spent_lists_nothing_and_says_why(seeded: Session) -> None:
    from backfill import quota

    settings = load_settings()
    start = quota.day_start(settings, scheduler.months.db_now(seeded))
    seeded.execute(
        text(
            'INSERT INTO quota_usage (provider, "window", window_start, calls, exhausted)'
            " VALUES ('isbndb', 'day', :start, :limit, false)"
        ),
        {"start": start, "limit": settings.isbndb_daily_limit},
    )
    dry = scheduler.schedule(seeded, batch_size=5, dry_run=True, settings=settings)
    real = scheduler.schedule(seeded, batch_size=5, settings=settings)
    assert dry.months == [] == real.months
    assert "isbndb" in dry.blocked_until and dry.blocked_until == real.blocked_until
    assert dry.reason is not None and dry.reason.startswith("quota spent: isbndb until ")
    assert dry.skipped == real.skipped == 5


def test_candidate_query_uses_the_partial_index(session: Session) -> None:
    scheduler.seed_months(session, 1900, 2100)
    session.execute(update(BackfillLog).where(BackfillLog.year < 2000).values(status="completed"))
    session.execute(text("ANALYZE backfill_log"))
    settings = load_settings()
    now = session.scalar(select(func.now()))
    query = scheduler.candidates_query(settings, now, None, False, 10).with_for_update(
        skip_locked=True
    )
    compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    plan = "\n".join(r[0] for r in session.execute(text(f"EXPLAIN {compiled}")))
    assert "idx_backfill_log_pending" in plan, plan


# -- concurrency: real commits, real threads


def test_concurrent_schedulers_claim_each_month_at_most_once(committed_db: str, published) -> None:  # type: ignore[no-untyped-def]
    factory = session_factory(committed_db)
    with factory() as s, s.begin():
        scheduler.seed_months(s, 2000, 2024)
    barrier = threading.Barrier(10)
    claimed: list[str] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                with factory() as s:
                    result = scheduler.schedule(s, batch_size=20)
                with lock:
                    claimed.extend(m.label for m in result.months)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    counts = Counter(claimed)
    assert len(claimed) == 300 and max(counts.values()) == 1
    messages = published()
    assert len(messages) == 300
    keys = Counter((m["kwargs"]["year"], m["kwargs"]["month"]) for m in messages)
    assert max(keys.values()) == 1
    with factory() as s:
        assert s.scalar(select(func.count()).where(BackfillLog.status == "processing")) == 300
        assert s.scalar(select(func.count()).select_from(MonthAttempt)) == 300


def test_process_month_task_declares_the_retry_budget() -> None:
    from backfill.tasks import process_month

    assert process_month.name == "backfill.process_month"
    assert process_month.max_retries == 5
    assert process_month.acks_late and process_month.reject_on_worker_lost
