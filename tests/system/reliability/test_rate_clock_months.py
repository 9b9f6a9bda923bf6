"""Rate limits on a real clock, at the month level (issue 13's "done means").

Against an emulator whose ISBNdb window is 0.95 s out of step with ours, with
0-100 ms of jitter on each request, 4 worker processes at 1 request a second
complete 12 months; ISBNdb is never marked spent for the day, and at most 3% of
its requests get a 429.

``tests/integration/test_rate_clock.py`` measures the same at the client level (processes
calling :class:`IsbndbClient` directly). Here the requests come from a real
``celery worker -c 4``: the generators, the resolver's title searches and the
bulk lookups of several months at once, with their retries, all through the
global ledger. ``RESOLVERS=isbndb`` sends every title search to ISBNdb and the
months ask for 15 titles each, so the run is ISBNdb-bound at 1 request a
second (a minute or two).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text

from backfill import quota, scheduler
from backfill.config import load_settings
from backfill.db import session_factory
from tests.support.sandbox_fixture import Sandbox
from tests.system.reliability.harness import (
    FAST,
    ledger_calls,
    print_figures,
    query,
    seed_range,
    wait_settled,
)

pytestmark = pytest.mark.slow

FIRST, LAST = (2023, 1), (2023, 12)
OFFSET = 0.95  # the API's second starts 0.95 s after ours
JITTER_MS = 100
WORKERS = 4
RATE = 1  # ISBNdb's basic plan, on both sides
BATCH = 12  # titles each month asks for: ~70 ISBNdb requests, about 75 s at 1/s


def test_twelve_months_on_a_skewed_jittery_isbndb_window(
    worker_factory: Any, sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(
        isbndb_rate_per_second=RATE,
        isbndb_rate_message="Limit Exceeded",  # ISBNdb's one answer for every limit
        rate_clock_offset_seconds=OFFSET,
        rate_jitter_ms=JITTER_MS,
    )
    env = {
        **sandbox.env(),
        **FAST,
        "ISBNDB_RATE_PER_SECOND": str(RATE),
        # ISBNDB_DAILY_LIMIT stays at its default (5000)
        "RESOLVERS": "isbndb",  # every title search goes to ISBNdb, as does every bulk
    }
    worker = worker_factory(concurrency=WORKERS, **env)
    assert seed_range(committed_db, FIRST, LAST) == 12
    with session_factory(committed_db)() as s, s.begin():
        s.execute(text("UPDATE backfill_log SET batch_size = :n"), {"n": BATCH})
    started = time.monotonic()
    with session_factory(committed_db)() as s:
        result = scheduler.schedule(s, batch_size=12, year_range=(2023, 2023))
    assert result.triggered == 12
    exhausted_seen: list[bool] = []

    def watch(_: dict[str, int]) -> None:  # the day must never be marked spent, even briefly
        rows = query(
            committed_db,
            "SELECT bool_or(exhausted) FROM quota_usage"
            " WHERE provider = 'isbndb' AND \"window\" IN ('day', 'probe')",
        )
        exhausted_seen.append(bool(rows and rows[0][0]))

    settled = wait_settled(committed_db, timeout=600, tick=watch)
    elapsed = time.monotonic() - started
    stats = sandbox.stats()
    statuses = stats["by_status"]["isbndb"]
    sent = stats["calls"]["isbndb"]
    refused = statuses.get("429", 0)
    log = worker.log_path.read_text(errors="replace")
    print_figures(
        f"12 months, ISBNdb {RATE}/s on a window {OFFSET} s out of step,"
        f" 0-{JITTER_MS} ms jitter, {WORKERS} worker processes",
        months=settled,
        seconds=round(elapsed, 1),
        isbndb_requests=sent,
        isbndb_429=refused,
        isbndb_429_ratio=f"{refused / max(sent, 1):.2%}",
        isbndb_statuses=statuses,
        isbndb_endpoints={k: v for k, v in stats["by_endpoint"].items() if "isbndb" in k},
        max_isbndb_per_second=stats.get("max_isbndb_per_second"),
        ledger_isbndb=ledger_calls(committed_db)["isbndb"],
        requests=stats["calls"],
        worker_log_429_lines=[line[-200:] for line in log.splitlines() if " 429" in line][:10],
    )

    assert settled == {"completed": 12}, settled
    assert not any(exhausted_seen)
    with session_factory(committed_db)() as s:
        settings = load_settings(database_url=committed_db, isbndb_rate_per_second=RATE)
        usage = quota.daily_usage(s, settings)["isbndb"]
        assert usage["exhausted"] is False, usage
        assert usage["limit"] == 5000
        assert quota.blocked_providers(s, settings) == {}
    assert query(committed_db, "SELECT count(*) FROM quota_usage WHERE exhausted")[0][0] == 0
    assert sent >= 60, "ISBNdb did too little work for the figure to mean anything"
    assert refused <= 0.03 * sent, statuses
