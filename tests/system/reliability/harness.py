"""Helpers of the reliability suite: a beat subprocess, seeding, waiting, and the
figures every test prints (months by status, duplicates, calls seen on each side).

The "sides" of the accounting, all of which must agree:

* the sandbox: requests it actually received (``/_sandbox/stats``);
* the quota ledger (``quota_usage`` day rows): units reserved before each request;
* the months (``backfill_log`` and ``month_attempts``): calls of recorded attempts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from backfill import scheduler
from backfill.constants import PROVIDERS
from backfill.db import get_engine, session_factory
from tests.conftest import ROOT, subprocess_env
from tests.support.worker_env import FAST as WORKER_FAST

# The workers' settings, plus whole months of 20 titles and a beat every second.
FAST = {**WORKER_FAST, "BACKFILL_BATCH_SIZE": "20", "BACKFILL_BEAT_INTERVAL_SECONDS": "1"}
SETTLED = ("completed", "failed")


class BeatProcess:
    """A real ``celery beat`` subprocess with its schedule file in ``tmp_path``."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.tmp_path = tmp_path
        self.env = subprocess_env(**env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = tmp_path / "beat.log"

    def start(self) -> BeatProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "backfill", "beat",
                    "--schedule", str(self.tmp_path / "beat-schedule"),
                    "--loglevel", "INFO",
                ],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def seed_range(url: str, first: tuple[int, int], last: tuple[int, int]) -> int:
    """Seed the months ``first``..``last`` (inclusive, (year, month)); returns how many."""
    with session_factory(url)() as s, s.begin():
        result = scheduler.seed_months(
            s, first[0], last[0], start_month=first[1], end_month=last[1]
        )
    return result.inserted


def query(url: str, sql: str, **params: Any) -> list[Any]:
    """Rows of one read-only statement on a fresh connection of this process."""
    with get_engine(url).connect() as conn:
        return list(conn.execute(text(sql), params).all())


def status_counts(url: str) -> dict[str, int]:
    return {
        s: int(n) for s, n in query(url, "SELECT status, count(*) FROM backfill_log GROUP BY 1")
    }


def wait_settled(
    url: str,
    timeout: float,
    statuses: tuple[str, ...] = SETTLED,
    tick: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Wait until every month is in ``statuses``; returns the counts by status.

    A database error (a restart under way) is retried until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = status_counts(url)
        except Exception:  # PostgreSQL restarting: keep waiting
            time.sleep(0.5)
            continue
        if tick:
            tick(counts)
        if counts and set(counts) <= set(statuses):
            return counts
        time.sleep(0.3)
    raise AssertionError(f"months not settled after {timeout:g}s: {counts}")


def ledger_calls(url: str) -> dict[str, int]:
    """Units reserved per provider in the quota ledger (every day row)."""
    rows = query(
        url, "SELECT provider, sum(calls) FROM quota_usage WHERE \"window\" = 'day' GROUP BY 1"
    )
    return {p: 0 for p in PROVIDERS} | {p: int(n) for p, n in rows}


def month_calls(url: str) -> dict[str, int]:
    """Calls recorded in the months' counters (``backfill_log``)."""
    sums = ", ".join(f"coalesce(sum({p}_calls), 0)" for p in PROVIDERS)
    (row,) = query(url, f"SELECT {sums} FROM backfill_log")
    return dict(zip(PROVIDERS, map(int, row), strict=True))


def attempt_calls(url: str) -> dict[str, int]:
    """Calls recorded per attempt (``month_attempts``); must equal :func:`month_calls`."""
    sums = ", ".join(f"coalesce(sum({p}_calls), 0)" for p in PROVIDERS)
    (row,) = query(url, f"SELECT {sums} FROM month_attempts")
    return dict(zip(PROVIDERS, map(int, row), strict=True))


def book_checks(url: str) -> dict[str, Any]:
    """Books against the months' counters: no ISBN stored twice, and each completed
    month's ``isbns_resolved`` against the distinct ISBNs its resolved candidates
    point at (a book named in two months is one row, filed under the first).

    ``mismatched_months`` lists "YYYY-MM: resolved vs stored (attempts n)".
    """
    (total, distinct) = query(url, "SELECT count(*), count(DISTINCT isbn13) FROM books")[0]
    rows = query(
        url,
        """
        SELECT l.year, l.month, l.isbns_resolved, l.attempts,
               (SELECT count(DISTINCT c.isbn13) FROM candidates c
                WHERE c.backfill_id = l.id AND c.status = 'resolved'
                  AND c.superseded_at IS NULL) AS stored
        FROM backfill_log l WHERE l.status = 'completed'
        """,
    )
    mismatched = [r for r in rows if r.isbns_resolved != r.stored]
    (resolved,) = query(url, "SELECT coalesce(sum(isbns_resolved), 0) FROM backfill_log")[0]
    return {
        "books": int(total),
        "duplicates": int(total) - int(distinct),
        "resolved_sum": int(resolved),
        "mismatched_months": [
            f"{r.year:04d}-{r.month:02d}: {r.isbns_resolved} vs {r.stored} (attempts {r.attempts})"
            for r in mismatched
        ],
        "fewer_stored_than_resolved": [r for r in mismatched if r.stored < r.isbns_resolved],
        "single_attempt_mismatches": [r for r in mismatched if r.attempts == 1],
    }


def stuck(url: str) -> int:
    """Months left ``processing`` (a lost claim nobody took back)."""
    return status_counts(url).get("processing", 0)


def attempt_outcomes(url: str) -> dict[str, int]:
    return {
        o: int(n) for o, n in query(url, "SELECT outcome, count(*) FROM month_attempts GROUP BY 1")
    }


def print_figures(title: str, **figures: Any) -> None:
    """One block per test, visible with ``pytest -s`` / ``-rA``."""
    print(f"\n== {title}")
    for name, value in figures.items():
        print(f"   {name:<28} {value}")


def simulate_quota_reset(url: str) -> None:
    """Make the quota day end now, as if the clock had passed the next reset.

    The system decides from two stored timestamps, both on the database clock:
    the ledger's day rows (``window_start`` = the start of the current quota
    day) and the months' ``not_before`` (the reset a deferred month waits for).
    Moving both back by exactly one day is what a day of waiting does to them
    relative to the clock: the spent day becomes yesterday (today has no row:
    a full budget) and the deferred months' reset is in the past. Nothing
    else is touched; the code paths that run afterwards are the real ones.
    """
    with get_engine(url).begin() as conn:
        conn.execute(
            text(
                "UPDATE quota_usage SET window_start = window_start - interval '1 day'"
                " WHERE \"window\" = 'day'"
            )
        )
        conn.execute(
            text(
                "UPDATE backfill_log SET not_before = not_before - interval '1 day'"
                " WHERE not_before IS NOT NULL"
            )
        )
