"""Celery worker subprocesses for the benchmarks, with the same flags for every app, and
a run of whole months through one: seeded, claimed by the scheduler, waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from bench._common import ROOT, set_env, subprocess_env

# For the workers (and the scheduler) of the month-running benchmarks: retries without
# production's waits (30 s..10 min between attempts, 1..20 s inside one) -- they count
# requests and attempts, not the time spent backing off -- and no hand-off of resolved
# ISBNs to the shared durable enrichment queue (ignored by code that has none).
WORKER_ENV = {
    "ENRICHMENT_QUEUE": "",
    "BACKFILL_RETRY_BACKOFF_SECONDS": "0.2",
    "BACKFILL_RETRY_BACKOFF_MAX_SECONDS": "1",
    "PROVIDER_RETRY_BACKOFF_SECONDS": "0.05",
    "PROVIDER_RETRY_BACKOFF_MAX_SECONDS": "0.2",
    "GEMINI_RATE_PER_MINUTE": "0",
    "XAI_RATE_PER_MINUTE": "0",
    "GOOGLE_BOOKS_RATE_PER_MINUTE": "0",
}
SETTLED = ("completed", "failed")


class Worker:
    """``celery -A <app> worker`` on one queue, prefork, ``concurrency`` processes."""

    def __init__(
        self,
        app: str,
        queue: str,
        log_path: Path,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> None:
        self.app, self.queue, self.log_path, self.concurrency = app, queue, log_path, concurrency
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", self.app, "worker",
                    "-Q", self.queue, "-c", str(self.concurrency), "--pool", "prefork",
                    "-n", f"bench-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO",
                    "--without-mingle", "--without-gossip",
                ],
                cwd=ROOT, env=subprocess_env(**self.env), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() takes the pool too
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while "ready." not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"worker not ready: {self.log()[-3000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def dispatch_year(url: str, year: int, months: int = 12) -> int:
    """Seed ``year``'s first ``months`` months and let ``scheduler.schedule`` claim and
    publish them all at once (to ``BACKFILL_TASK_QUEUE``), with :data:`WORKER_ENV` set in
    this process too; returns how many it published."""
    from backfill import scheduler
    from backfill.db import session_factory

    set_env(**WORKER_ENV)

    with session_factory(url)() as s:
        scheduler.seed_months(s, year, year, start_month=1, end_month=months)
        s.commit()
    with session_factory(url)() as s:
        result = scheduler.schedule(s, batch_size=months, year_range=(year, year))
    if result.errors:
        raise RuntimeError(f"dispatch errors: {result.errors}")
    return int(result.triggered)


def status_counts(url: str) -> dict[str, int]:
    """Months of ``backfill_log`` by status."""
    from backfill.db import get_engine

    with get_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM backfill_log GROUP BY 1")).all()
    return {str(status): int(n) for status, n in rows}


def wait_settled(url: str, timeout: float) -> tuple[dict[str, int], float]:
    """Poll until every month is completed or failed, or ``timeout`` seconds pass;
    returns the counts by status and the seconds waited (a bench reports, never hangs)."""
    started = time.monotonic()
    counts: dict[str, int] = {}
    while time.monotonic() - started < timeout:
        counts = status_counts(url)
        if counts and set(counts) <= set(SETTLED):
            break
        time.sleep(0.5)
    return counts, time.monotonic() - started
