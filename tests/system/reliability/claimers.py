"""Code run inside spawned processes by the concurrent-scheduler test.

Kept apart from the test module on purpose: a spawned interpreter imports the
module of its target, and ``tests/conftest.py`` (imported by the harness)
would give that process a database and queue name of its own.
"""

from __future__ import annotations

from typing import Any


def claim_loop(url: str, calls: int, batch_size: int, ready: Any, go: Any, out: Any) -> None:
    """Wait for the start signal, then call ``schedule()`` ``calls`` times on this
    process's own engine; put ``("ok", [(year, month, job_id), ...])`` or ``("error", text)``."""
    try:
        from backfill import scheduler
        from backfill.config import load_settings
        from backfill.db import session_factory

        settings = load_settings(database_url=url)
        factory = session_factory(url)  # a fresh engine: this process's pid
        ready.put(1)
        go.wait(60)
        claimed: list[tuple[int, int, str | None]] = []
        errors: list[dict[str, Any]] = []
        for _ in range(calls):
            with factory() as session:
                result = scheduler.schedule(session, batch_size=batch_size, settings=settings)
            claimed += [(m.year, m.month, m.job_id) for m in result.months]
            errors += result.errors
        out.put(("ok", claimed, errors))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put(("error", f"{type(exc).__name__}: {exc}", []))
