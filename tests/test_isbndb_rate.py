"""The ISBNdb rate and day budget hold across processes: real processes, real HTTP, real ledger.

The sandbox enforces the same limits as ISBNdb (429 when a wall-clock second
sees more requests than the rate) and counts the busiest second, so these tests
fail if any two processes ever send more than the limit within one second.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from backfill.config import load_settings
from backfill.exceptions import QuotaExhausted
from backfill.providers import IsbndbClient
from tests.pipeline_support import FAST, assert_ledger_matches, make_settings
from tests.sandbox_fixture import Sandbox


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
