"""The global quota ledger on the real PostgreSQL: budgets, rate windows, resets, processes."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import time
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


def test_reserve_counts_one_unit_in_the_day_and_the_rate_window(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, isbndb_rate_per_second=50)
    for _ in range(3):
        quota.reserve("isbndb", settings)
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [3]
    assert sum(calls for _, calls in rows(ledger, "isbndb", "second")) == 3
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
    # the refused attempt left nothing behind, in the day or in the rate window
    assert [calls for _, calls in rows(ledger, "isbndb", "day")] == [2]
    assert sum(calls for _, calls in rows(ledger, "isbndb", "second")) == 2
    assert quota.blocked_providers(ledger, settings) == {"isbndb": quota.next_reset(settings)}
    assert quota.daily_usage(ledger, settings)["isbndb"]["exhausted"] is True


def test_mark_exhausted_blocks_until_the_reset(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db)
    quota.reserve("gemini", settings)
    resets_at = quota.mark_exhausted("gemini", settings)
    assert resets_at == quota.next_reset(settings)
    with pytest.raises(QuotaExhausted):
        quota.reserve("gemini", settings)
    usage = quota.daily_usage(ledger, settings)["gemini"]
    assert (usage["used"], usage["exhausted"]) == (1, True)
    assert quota.blocked_providers(ledger, settings) == {"gemini": resets_at}
    quota.reserve("xai", settings)  # other providers are unaffected


def test_rate_window_holds_calls_to_the_limit_per_database_second(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, isbndb_rate_per_second=1)
    started = time.monotonic()
    for _ in range(3):
        quota.reserve("isbndb", settings)
    elapsed = time.monotonic() - started
    windows = rows(ledger, "isbndb", "second")
    assert [calls for _, calls in windows] == [1, 1, 1]
    assert len({start for start, _ in windows}) == 3
    assert all(start.microsecond == 0 for start, _ in windows)
    assert 1.0 <= elapsed < 4.0  # waited for the next windows, not longer


def test_a_zero_minute_limit_means_no_minute_window(ledger: Session, committed_db: str) -> None:
    settings = settings_for(committed_db, gemini_rate_per_minute=0)
    started = time.monotonic()
    for _ in range(5):
        quota.reserve("gemini", settings)
    assert time.monotonic() - started < 2
    assert rows(ledger, "gemini", "minute") == []
    assert [calls for _, calls in rows(ledger, "gemini", "day")] == [5]


def test_minute_window_is_shared_and_full_window_is_not_charged(
    ledger: Session, committed_db: str
) -> None:
    settings = settings_for(committed_db, xai_rate_per_minute=2)
    quota.reserve("xai", settings)
    quota.reserve("xai", settings)
    now = ledger.execute(text("SELECT clock_timestamp()")).scalar_one()
    if now.second >= 55:  # the third would legitimately land in the next minute
        pytest.skip("too close to a minute boundary to test a full minute window")
    with quota.get_engine(committed_db).connect() as conn:
        wait = quota._try_reserve(conn, "xai", quota.limits_for("xai", settings), settings)
    assert wait is not None and 0 < wait <= 60
    assert [calls for _, calls in rows(ledger, "xai", "day")] == [2]
    assert [calls for _, calls in rows(ledger, "xai", "minute")] == [2]


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


def test_no_unit_is_granted_in_the_last_moments_of_a_window(
    ledger: Session, committed_db: str
) -> None:
    # A unit granted at .9s would pay for a request that may reach the API in
    # the next second, on top of that second's own units: it waits instead.
    settings = settings_for(committed_db, isbndb_rate_per_second=5)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        now = ledger.execute(text("SELECT clock_timestamp()")).scalar_one()
        ledger.commit()
        if 0.8 <= now.microsecond / 1e6 < 0.9:
            break
        time.sleep(0.01)
    else:
        pytest.fail("never saw the database clock at .8s")
    quota.reserve("isbndb", settings)
    ((window_start, calls),) = rows(ledger, "isbndb", "second")
    assert calls == 1
    assert window_start == now.replace(microsecond=0) + dt.timedelta(seconds=1)


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
    assert [calls for _, calls in rows(ledger, "openlibrary", "second")] == [1]
    assert [calls for _, calls in rows(ledger, "googlebooks", "minute")] == [1]


def test_an_optional_resolver_spent_does_not_block_the_months(
    ledger: Session, committed_db: str
) -> None:
    from backfill import months

    settings = settings_for(committed_db, openlibrary_daily_limit=1, openlibrary_rate_per_second=50)
    quota.reserve("openlibrary", settings)
    with pytest.raises(QuotaExhausted):
        quota.reserve("openlibrary", settings)
    quota.mark_exhausted("googlebooks", settings)
    blocked = quota.blocked_providers(ledger, settings)
    assert set(blocked) == {"openlibrary", "googlebooks"}
    assert months.blocked_until(ledger, settings) == {}
    quota.mark_exhausted("isbndb", settings)  # ISBNdb's day still stops every month
    assert "isbndb" in months.blocked_until(ledger, settings)


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
