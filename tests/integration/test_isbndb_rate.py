"""The ISBNdb rate and day budget hold across processes: real processes, real HTTP, real ledger;
and ISBNdb's ambiguous 429 "Limit Exceeded" closes the day only near its limit.

The sandbox enforces the same limits as ISBNdb (429 when a wall-clock second
sees more requests than the rate) and counts the busiest second, so these tests
fail if any two processes ever send more than the limit within one second.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from backfill import quota
from backfill.config import load_settings
from backfill.db import session_factory
from backfill.exceptions import ProviderError, QuotaExhausted
from backfill.providers import IsbndbClient
from tests.support.pipeline_support import FAST, assert_ledger_matches, make_settings
from tests.support.sandbox_fixture import Sandbox


def _lookups(
    overrides: dict[str, Any],
    isbns: list[str],
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """One worker process: wait for the start signal, then look ISBNs up one by one."""
    client = IsbndbClient(load_settings(**overrides))
    ready.put(1)
    go.wait(60)
    granted = refused = 0
    for isbn in isbns:
        try:
            client.book(isbn)
            granted += 1
        except QuotaExhausted:
            refused += 1
    results.put((granted, refused, client.calls))


def test_eight_processes_never_exceed_the_rate_nor_the_day(
    sandbox: Sandbox, committed_db: str
) -> None:
    rate, daily, per_process = 5, 20, 3
    sandbox.configure(isbndb_rate_per_second=rate)
    overrides = {
        **sandbox.settings_overrides(),
        **FAST,
        "database_url": committed_db,
        "isbndb_rate_per_second": rate,
        "isbndb_daily_limit": daily,
    }
    books = sandbox.truth(2024, 5)["books"]
    isbns = [b["isbn13"] for b in books if b["kind"] == "isbn"][:per_process]
    ctx = multiprocessing.get_context("spawn")  # fresh interpreters, like worker processes
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_lookups, args=(overrides, isbns, ready, go, results)) for _ in range(8)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        go.set()
        outcomes = [results.get(timeout=60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    stats = sandbox.stats()
    assert sum(granted for granted, _, _ in outcomes) == daily
    assert sum(refused for _, refused, _ in outcomes) == 8 * per_process - daily
    assert stats["calls"]["isbndb"] == daily == sum(calls for _, _, calls in outcomes)
    assert stats["by_status"]["isbndb"] == {"200": daily}  # not one 429
    assert stats["max_isbndb_per_second"] <= rate
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == daily


def test_the_default_rate_of_one_per_second_provokes_no_429(
    sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(isbndb_rate_per_second=1)
    settings = make_settings(sandbox, committed_db, isbndb_rate_per_second=1)
    isbn = next(b["isbn13"] for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    started = time.monotonic()
    threads = [threading.Thread(target=IsbndbClient(settings).book, args=(isbn,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started
    stats = sandbox.stats()
    assert stats["by_status"]["isbndb"] == {"200": 4}
    assert stats["max_isbndb_per_second"] == 1
    assert 2.0 <= elapsed < 6.0  # four calls need four distinct seconds
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 4


# -- a bare 429 "Limit Exceeded": the rate, unless the day's count is near the limit


def _spent(url: str) -> bool:
    """Whether ISBNdb's day is marked spent in the ledger (the API's word, not our count)."""
    with session_factory(url)() as session:
        flag = session.scalar(
            text("SELECT bool_or(exhausted) FROM quota_usage WHERE provider = 'isbndb'")
        )
    return bool(flag)


def test_a_run_of_bare_429s_far_from_the_daily_limit_never_closes_the_day(
    sandbox: Sandbox, committed_db: str
) -> None:
    # The sandbox answers 429 "Limit Exceeded" to everything (its day is spent),
    # but our ledger counts 0 of 5,000: that is a rate answer, retried and given up.
    sandbox.configure(quota_exhausted={"isbndb": True})
    settings = make_settings(sandbox, committed_db, isbndb_daily_limit=5000)
    client = IsbndbClient(settings)
    with pytest.raises(ProviderError, match="HTTP 429: Limit Exceeded after 4 tries"):
        client.book("9780306406157")
    assert not _spent(committed_db)
    with session_factory(committed_db)() as session:
        assert quota.blocked_providers(session, settings) == {}
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == client.calls == 4


def test_a_bare_429_that_persists_near_the_daily_limit_is_the_days_quota(
    sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(isbndb_daily_limit=2)
    settings = make_settings(sandbox, committed_db, isbndb_daily_limit=12)  # within 10
    client = IsbndbClient(settings)
    client.book("9780306406157")
    client.book("9780306406157")
    with pytest.raises(QuotaExhausted):
        client.book("9780306406157")
    assert _spent(committed_db)
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 2 + 4


def test_an_answer_that_names_the_day_is_the_quota_at_once_even_far_from_the_limit(
    sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(isbndb_daily_limit=0, isbndb_daily_status=403)
    client = IsbndbClient(make_settings(sandbox, committed_db, isbndb_daily_limit=5000))
    with pytest.raises(QuotaExhausted):
        client.book("9780306406157")
    assert _spent(committed_db)
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 1


def test_a_day_marked_spent_is_probed_once_and_reopened_when_answered(
    sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(quota_exhausted={"isbndb": True})
    probe = 0.02  # minutes: 1.2 s
    settings = make_settings(
        sandbox, committed_db, isbndb_daily_limit=12, quota_probe_minutes=probe
    )
    client = IsbndbClient(settings)
    isbn = next(b["isbn13"] for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    with pytest.raises(QuotaExhausted):
        client.book(isbn)  # near the limit (12): four 429s close the day
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 4
    with pytest.raises(QuotaExhausted):
        client.book(isbn)  # closed: nothing sent
    time.sleep(probe * 60 + 0.2)
    with pytest.raises(QuotaExhausted):  # the probe: one request, still refused
        client.book(isbn)
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 5 and _spent(committed_db)
    sandbox.configure(quota_exhausted={"isbndb": False})  # it was not the day after all
    with pytest.raises(QuotaExhausted):
        client.book(isbn)  # the next probe is not due yet
    time.sleep(probe * 60 + 0.2)
    assert client.book(isbn) is not None  # the probe, answered: reopened
    assert not _spent(committed_db)
    assert client.book(isbn) is not None
    assert assert_ledger_matches(sandbox, committed_db)["isbndb"] == 7


def test_a_daily_limit_of_zero_sends_nothing(sandbox: Sandbox, committed_db: str) -> None:
    client = IsbndbClient(make_settings(sandbox, committed_db, isbndb_daily_limit=0))
    for _ in range(2):
        with pytest.raises(QuotaExhausted):
            client.book("9780306406157")
    assert sandbox.stats()["calls"]["isbndb"] == client.calls == 0
