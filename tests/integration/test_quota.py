"""The global quota ledger on the real PostgreSQL: budgets, rate spacing, probes, resets,
processes."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from backfill import quota
from backfill.config import Settings, load_settings
from backfill.db import session_factory
from backfill.exceptions import QuotaExhausted

UTC = dt.UTC


@pytest.fixture
def ledger(committed_db: str) -> Iterator[Session]:
    """A session on the emptied test database; reserve() commits on its own connections."""
    with session_factory(committed_db)() as session:
        yield session


def settings_for(url: str, **overrides: object) -> Settings:
    return load_settings(database_url=url, **overrides)


def rows(session: Session, provider: str, window: str) -> list[tuple[dt.datetime, int]]:
    result = session.execute(
        text(
            'SELECT window_start, calls FROM quota_usage WHERE provider = :p AND "window" = :w'
            " ORDER BY window_start"
        ),
        {"p": provider, "w": window},
    )
    session.commit()  # end the read transaction: the next read sees new commits
    return [(r.window_start, r.calls) for r in result]


def test_reserve_counts_one_unit_in_the_day_and_one_rate_slot(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, isbndb_rate_per_second=50)
    for _ in range(3):
        grant = quota.reserve("isbndb", settings)
        assert grant.slot is not None and not grant.probe
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [3]
    assert [calls for _, calls in rows(ledger, "isbndb", "grant")] == [1, 1, 1]
    usage = quota.daily_usage(ledger, settings)
    assert usage["isbndb"]["used"] == 3
    assert usage["isbndb"]["remaining"] == settings.isbndb_daily_limit - 3
    assert usage["gemini"] == {
        "used": 0,
        "limit": settings.gemini_daily_limit,
        "remaining": settings.gemini_daily_limit,
        "exhausted": False,
        "resets_at": quota.next_reset(settings).isoformat(),
    }


def test_daily_budget_spent_raises_quota_exhausted_and_never_goes_over(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, isbndb_daily_limit=2, isbndb_rate_per_second=50)
    quota.reserve("isbndb", settings)
    quota.reserve("isbndb", settings)
    with pytest.raises(QuotaExhausted) as caught:
        quota.reserve("isbndb", settings)
    assert caught.value.provider == "isbndb"
    assert caught.value.resets_at == quota.next_reset(settings)
    # the refused attempt left nothing behind, in the day or in the rate slots
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [2]
    assert len(rows(ledger, "isbndb", "grant")) == 2
    # spent by our own count: no probe, closed until the reset
    assert quota.blocked_providers(ledger, settings) == {"isbndb": quota.next_reset(settings)}
    assert quota.daily_usage(ledger, settings)["isbndb"]["exhausted"] is True


@pytest.mark.parametrize("provider", ["isbndb", "gemini", "openlibrary"])
def test_a_daily_limit_of_zero_lets_no_call_through(
    provider: str, ledger: Session, committed_db: str
) -> None:
    # The day's first unit used to be inserted without looking at the limit.
    settings = settings_for(
        committed_db, isbndb_daily_limit=0, gemini_daily_limit=0, openlibrary_daily_limit=0
    )
    for _ in range(2):
        with pytest.raises(QuotaExhausted):
            quota.reserve(provider, settings)
    assert rows(ledger, provider, "day") == [] and rows(ledger, provider, "grant") == []
    assert quota.daily_usage(ledger, settings)[provider]["exhausted"] is True


def test_mark_exhausted_blocks_until_the_probe(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db)
    quota.reserve("gemini", settings)
    resets_at = quota.mark_exhausted("gemini", settings)
    assert resets_at == quota.next_reset(settings)
    with pytest.raises(QuotaExhausted) as caught:
        quota.reserve("gemini", settings)
    assert caught.value.resets_at == resets_at  # a month is deferred to the reset
    usage = quota.daily_usage(ledger, settings)["gemini"]
    assert (usage["used"], usage["exhausted"]) == (1, True)
    # the scheduler waits for the probe, QUOTA_PROBE_MINUTES from now (or the reset)
    ((probe_at, _),) = rows(ledger, "gemini", "probe")
    now = ledger.execute(text("SELECT clock_timestamp()")).scalar_one()
    ledger.commit()
    assert dt.timedelta(minutes=29) < probe_at - now <= dt.timedelta(minutes=30)
    assert quota.blocked_providers(ledger, settings) == {"gemini": min(probe_at, resets_at)}
    quota.reserve("xai", settings)  # other providers are unaffected


def test_without_probes_a_day_marked_spent_stays_closed_until_the_reset(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, quota_probe_minutes=0)
    resets_at = quota.mark_exhausted("isbndb", settings)
    assert rows(ledger, "isbndb", "probe") == []
    assert quota.blocked_providers(ledger, settings) == {"isbndb": resets_at}
    with pytest.raises(QuotaExhausted):
        quota.reserve("isbndb", settings)


def _due_probe(ledger: Session, provider: str) -> None:
    """Move the provider's next probe into the past (as if QUOTA_PROBE_MINUTES passed)."""
    ledger.execute(
        text(
            "UPDATE quota_usage SET window_start = clock_timestamp() - interval '1 second'"
            " WHERE provider = :p AND \"window\" = 'probe'"
        ),
        {"p": provider},
    )
    ledger.commit()


def test_one_process_wins_the_probe_and_an_answer_reopens_the_day(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, isbndb_rate_per_second=50)
    quota.reserve("isbndb", settings)
    quota.mark_exhausted("isbndb", settings)
    _due_probe(ledger, "isbndb")
    assert quota.blocked_providers(ledger, settings) == {}  # the scheduler may claim again
    grants: list[quota.Grant] = []
    refused: list[QuotaExhausted] = []

    def one() -> None:
        try:
            grants.append(quota.reserve("isbndb", settings))
        except QuotaExhausted as exc:
            refused.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [g.probe for g in grants] == [True] and len(refused) == 7
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [2]  # the probe is paid
    # while the probe is out, the next one is QUOTA_PROBE_MINUTES away
    assert set(quota.blocked_providers(ledger, settings)) == {"isbndb"}
    quota.clear_exhausted("isbndb", settings)  # what the client does when it is answered
    assert quota.blocked_providers(ledger, settings) == {}
    assert not quota.reserve("isbndb", settings).probe
    assert rows(ledger, "isbndb", "probe") == []


def test_no_probe_when_our_own_count_spent_the_day(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db, isbndb_daily_limit=1, isbndb_rate_per_second=50)
    quota.reserve("isbndb", settings)
    quota.mark_exhausted("isbndb", settings)
    _due_probe(ledger, "isbndb")
    with pytest.raises(QuotaExhausted):
        quota.reserve("isbndb", settings)
    assert quota.blocked_providers(ledger, settings) == {"isbndb": quota.next_reset(settings)}


def test_near_the_daily_limit(ledger: Session, committed_db: str) -> None:
    # within 10 requests or 2% of the limit, whichever is more
    small = settings_for(committed_db, isbndb_daily_limit=15, isbndb_rate_per_second=1000)
    assert not quota.near_daily_limit("isbndb", small)
    for _ in range(5):
        quota.reserve("isbndb", small)
    assert quota.near_daily_limit("isbndb", small)
    big = settings_for(committed_db, isbndb_daily_limit=5000)
    ledger.execute(text("UPDATE quota_usage SET calls = 4899 WHERE \"window\" = 'day'"))
    ledger.commit()
    assert not quota.near_daily_limit("isbndb", big)
    ledger.execute(text("UPDATE quota_usage SET calls = 4900 WHERE \"window\" = 'day'"))
    ledger.commit()
    assert quota.near_daily_limit("isbndb", big)


def test_per_second_slots_are_spaced_by_the_rate_and_the_margin(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, isbndb_rate_per_second=1)
    started = time.monotonic()
    for _ in range(3):
        quota.reserve("isbndb", settings)
    elapsed = time.monotonic() - started
    slots = [start for start, _ in rows(ledger, "isbndb", "grant")]
    assert len(slots) == 3
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
    assert all(abs(gap - 1.1) < 0.01 for gap in gaps), gaps  # (1 / 1) * (1 + 10%)
    assert 2.2 <= elapsed < 3.5  # slept until each slot, not longer


def test_the_margin_is_configurable(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db, isbndb_rate_per_second=4, rate_margin=0.5)
    for _ in range(3):
        quota.reserve("isbndb", settings)
    slots = [start for start, _ in rows(ledger, "isbndb", "grant")]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(slots)]
    assert all(abs(gap - 0.375) < 0.01 for gap in gaps), gaps  # (1 / 4) * 1.5


def _most_in_one_second(times: list[float], shift: float) -> int:
    """The most of ``times`` (seconds) in one whole second of a clock ``shift`` s ahead."""
    return max(Counter(math.floor(t + shift) for t in times).values())


def test_sixteen_threads_never_put_more_than_the_rate_in_any_second(
    ledger: Session, committed_db: str
) -> None:
    rate, units = 2, 40
    settings = settings_for(committed_db, isbndb_rate_per_second=rate)
    sent: list[float] = []  # when each request would leave (this machine's clock)
    lock = threading.Lock()
    left = iter(range(units))

    def worker() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            quota.reserve("isbndb", settings)
            now = time.time()
            with lock:
                sent.append(now)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    slots = sorted(start.timestamp() for start, _ in rows(ledger, "isbndb", "grant"))
    assert len(slots) == len(sent) == units
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [units]
    # On the database clock: consecutive slots (1 / rate) * 1.1 apart, so no
    # sliding second holds more than the rate.
    assert min(b - a for a, b in itertools.pairwise(slots)) >= 0.55 - 1e-6
    assert all(later - slots[i] >= 1.0 for i, later in enumerate(slots[rate:]))
    # The whole seconds of our clock and of a clock half a second out of step with
    # it, on the slots and on the moments the requests would leave.
    for shift in (0.0, 0.5):
        assert _most_in_one_second(slots, shift) <= rate
        assert _most_in_one_second(sent, shift) <= rate


def test_a_zero_minute_limit_means_no_rate_slots(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db, gemini_rate_per_minute=0)
    started = time.monotonic()
    for _ in range(5):
        assert quota.reserve("gemini", settings).slot is None
    assert time.monotonic() - started < 2
    assert rows(ledger, "gemini", "grant") == []
    assert [calls for _, calls in rows(ledger, "gemini", "day")] == [5]


def test_a_per_minute_plan_bursts_then_waits_for_its_sliding_window(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, xai_rate_per_minute=2)
    started = time.monotonic()
    quota.reserve("xai", settings)
    quota.reserve("xai", settings)
    assert time.monotonic() - started < 1  # a per-minute plan allows the burst
    # the third waits until the first is 60 s * (1 + 10%) old, whatever the minute
    with quota.get_engine(committed_db).connect() as conn:
        wait = quota._try_reserve(conn, "xai", quota.limits_for("xai", settings), settings)
    assert isinstance(wait, quota._Wait)
    ahead = quota.RESERVE_AHEAD_SECONDS
    assert 66 - 3 - ahead < wait.seconds <= 66 - ahead
    assert [calls for _, calls in rows(ledger, "xai", "day")] == [2]  # nothing kept
    assert len(rows(ledger, "xai", "grant")) == 2


@pytest.mark.parametrize(
    ("now", "hour", "expected"),
    [
        ("2024-05-10T10:00:00+00:00", 0, "2024-05-11T00:00:00+00:00"),
        ("2024-05-10T10:00:00+00:00", 12, "2024-05-10T12:00:00+00:00"),
        ("2024-05-10T12:00:00+00:00", 12, "2024-05-11T12:00:00+00:00"),
        ("2024-12-31T23:59:59+00:00", 0, "2025-01-01T00:00:00+00:00"),
        ("2024-05-10T01:00:00+02:00", 0, "2024-05-10T00:00:00+00:00"),  # 23:00 UTC the day before
    ],
)
def test_next_reset_follows_the_reset_hour(now: str, hour: int, expected: str) -> None:
    settings = load_settings(quota_reset_hour_utc=hour)
    got = quota.next_reset(settings, dt.datetime.fromisoformat(now))
    assert got == dt.datetime.fromisoformat(expected)
    assert got.tzinfo is not None


def _reserve_many(url: str, count: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    settings = load_settings(database_url=url, isbndb_daily_limit=25, isbndb_rate_per_second=1000)
    granted = refused = 0
    for _ in range(count):
        try:
            quota.reserve("isbndb", settings)
            granted += 1
        except QuotaExhausted:
            refused += 1
    results.put((granted, refused))


def test_eight_processes_never_overspend_the_day(ledger: Session, committed_db: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_reserve_many, args=(committed_db, 5, results)) for _ in range(8)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert sum(g for g, _ in outcomes) == 25
    assert sum(r for _, r in outcomes) == 40 - 25
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [25]


def test_the_title_search_providers_have_their_own_windows(committed_db: str) -> None:
    settings = settings_for(
        committed_db,
        openlibrary_rate_per_second=2,
        openlibrary_daily_limit=7,
        google_books_rate_per_minute=30,
        google_books_daily_limit=9,
    )
    assert quota.limits_for("openlibrary", settings) == quota.Limits(7, 2, "second")
    assert quota.limits_for("googlebooks", settings) == quota.Limits(9, 30, "minute")
    with pytest.raises(ValueError, match="unknown provider"):
        quota.limits_for("worldcat", settings)


def test_daily_usage_covers_every_provider(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db, openlibrary_rate_per_second=50)
    quota.reserve("openlibrary", settings)
    quota.reserve("googlebooks", settings)
    usage = quota.daily_usage(ledger, settings)
    assert set(usage) == {"gemini", "xai", "isbndb", "openlibrary", "googlebooks"}
    assert usage["openlibrary"]["used"] == usage["googlebooks"]["used"] == 1
    assert usage["googlebooks"]["limit"] == settings.google_books_daily_limit == 1000
    assert usage["openlibrary"]["limit"] == settings.openlibrary_daily_limit == 100_000
    assert [calls for _, calls in rows(ledger, "openlibrary", "grant")] == [1]
    assert [calls for _, calls in rows(ledger, "googlebooks", "grant")] == [1]


def test_an_optional_resolver_spent_does_not_block_the_months(
    ledger: Session, committed_db: str
) -> None:
    from backfill import scheduler

    settings = settings_for(committed_db, openlibrary_daily_limit=1, openlibrary_rate_per_second=50)
    quota.reserve("openlibrary", settings)
    with pytest.raises(QuotaExhausted):
        quota.reserve("openlibrary", settings)
    quota.mark_exhausted("googlebooks", settings)
    blocked = quota.blocked_providers(ledger, settings)
    assert set(blocked) == {"openlibrary", "googlebooks"}
    assert scheduler.blocked_until(ledger, settings) == {}
    quota.mark_exhausted("isbndb", settings)  # ISBNdb's day still stops every month
    assert "isbndb" in scheduler.blocked_until(ledger, settings)


@pytest.mark.parametrize("provider", ["openlibrary", "googlebooks", "isbndb"])
def test_charging_counts_a_call_on_the_month_row(
    provider: str, ledger: Session, committed_db: str
) -> None:
    from backfill import scheduler

    scheduler.seed_months(ledger, 2024, 2024, start_month=5, end_month=5)
    ledger.commit()
    backfill_id = ledger.execute(text("SELECT id FROM backfill_log")).scalar_one()
    settings = settings_for(committed_db, openlibrary_rate_per_second=50)
    with quota.charging(backfill_id):
        quota.reserve(provider, settings)
        quota.reserve(provider, settings)
    quota.reserve(provider, settings)  # outside the block: not the month's
    column = f"{provider}_calls"
    charged = ledger.execute(text(f"SELECT {column} FROM backfill_log")).scalar_one()
    ledger.commit()
    assert charged == 2
