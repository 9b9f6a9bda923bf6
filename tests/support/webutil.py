"""Helpers for the web, CLI and metrics tests: hand-built rows, snapshots, a live server."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from backfill.models import BackfillLog, Book, Candidate, MonthAttempt

SECRET = "test-cron-secret"  # what tests/conftest.py puts in BACKFILL_CRON_SECRET
AUTH = {"X-Cron-Secret": SECRET}
T0 = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)


def add_month(session: Session, year: int, month: int, **fields: Any) -> BackfillLog:
    """Insert one ``backfill_log`` row with ``fields`` (resolution_rate derived if omitted)."""
    generated = fields.get("books_generated", 0)
    resolved = fields.get("isbns_resolved", 0)
    fields.setdefault(
        "resolution_rate", Decimal(round(resolved * 100 / generated, 2)) if generated else 0
    )
    row = BackfillLog(year=year, month=month, **fields)
    session.add(row)
    session.flush()
    return row


def add_attempt(
    session: Session,
    row: BackfillLog,
    attempt: int,
    outcome: str,
    seconds: float | None,
    **fields: Any,
) -> MonthAttempt:
    """An attempt that started at T0 and took ``seconds`` (None: still running)."""
    started = fields.pop("started_at", T0)
    att = MonthAttempt(
        backfill_id=row.id,
        attempt=attempt,
        outcome=outcome,
        started_at=started,
        finished_at=started + dt.timedelta(seconds=seconds) if seconds is not None else None,
        **fields,
    )
    session.add(att)
    session.flush()
    return att


def add_candidate(
    session: Session,
    row: BackfillLog,
    title: str,
    status: str = "unresolved",
    *,
    isbn13: str | None = None,
    generators: tuple[str, ...] = ("gemini",),
    **fields: Any,
) -> Candidate:
    """A generated book of ``row``'s month (a ``books`` row is added for a resolved one)."""
    if isbn13 is not None and session.get(Book, isbn13) is None:
        session.add(Book(isbn13=isbn13, title=title))
        session.flush()
    fields.setdefault("authors", ["A. Writer"])
    cand = Candidate(
        backfill_id=row.id,
        title=title,
        status=status,
        isbn13=isbn13,
        generators={g: {"title": title, "isbns": [isbn13] if isbn13 else []} for g in generators},
        **fields,
    )
    session.add(cand)
    session.flush()
    return cand


def snapshot(bind: Session | Engine) -> list[tuple[Any, ...]]:
    """Every row of the state tables, to prove a request changed nothing."""
    rows: list[tuple[Any, ...]] = []
    for table in ("backfill_log", "month_attempts", "control_state"):
        query = text(f"SELECT * FROM {table} ORDER BY 1, 2")
        if isinstance(bind, Session):
            rows += [(table, *r) for r in bind.execute(query).all()]
        else:
            with bind.connect() as conn:
                rows += [(table, *r) for r in conn.execute(query).all()]
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` over real HTTP on a free loopback port in a thread; yields its URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
