"""The enrichment hand-off end to end (issue 12's "done means"): months run
through the web API and a real worker subprocess against the sandbox; the
enrichment queue, read with kombu like an outside consumer, holds exactly the
ISBNs resolved, in batches of at most 100, and every month's ``isbns_queued``
equals its ``isbns_resolved``. Then re-resolution's hand-off, in-process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from sqlalchemy import select, text

from backfill import rework, runner, scheduler
from backfill.db import session_factory
from backfill.models import BackfillLog, Candidate
from backfill.web import create_app
from tests.conftest import subprocess_env
from tests.support.handoffutil import drain, enrichment_queue
from tests.support.pipeline_support import make_settings
from tests.support.sandbox_fixture import Sandbox
from tests.support.webutil import AUTH, live_server
from tests.support.worker_env import FAST

pytestmark = pytest.mark.slow


def resolved_isbns(url: str, row_id: int) -> set[str]:
    with session_factory(url)() as s:
        return set(
            s.scalars(
                select(Candidate.isbn13).where(
                    Candidate.backfill_id == row_id,
                    Candidate.status == "resolved",
                    Candidate.superseded_at.is_(None),
                )
            )
        )


def months_of(url: str, labels: list[str]) -> dict[str, BackfillLog]:
    with session_factory(url)() as s:
        rows = s.scalars(select(BackfillLog)).all()
        return {r.label: r for r in rows if r.label in labels}


def wait_until(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_three_months_through_web_and_worker_reach_the_enrichment_queue(
    worker_factory: Callable[..., Any], sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.reset()
    with enrichment_queue() as queue:
        worker_factory(concurrency=2, **{**sandbox.env(), **FAST, "ENRICHMENT_QUEUE": queue})
        app = create_app({"TESTING": True})
        with live_server(app) as base, requests.Session() as http:
            http.headers.update(AUTH)
            seeded = http.post(
                f"{base}/api/internal/seed-backfill-queue",
                json={"year_start": 2024, "year_end": 2024},
                timeout=30,
            )
            assert seeded.status_code == 200 and seeded.json()["months_seeded"] == 12
            scheduled = http.post(
                f"{base}/api/internal/schedule-backfill",
                json={"batch_size": 3, "year_range": {"start": 2024, "end": 2024}},
                timeout=30,
            ).json()
            assert scheduled["execution_summary"] == {"triggered": 3, "skipped": 0, "errors": 0}
            labels = [f"{m['year']:04d}-{m['month']:02d}" for m in scheduled["months"]]
            assert labels == ["2024-12", "2024-11", "2024-10"]

            def handed_off() -> bool:
                rows = months_of(committed_db, labels).values()
                bad = [r for r in rows if r.status == "failed"]
                assert not bad, [(r.label, r.error_message) for r in bad]
                return all(
                    r.status == "completed" and r.isbns_queued == r.isbns_resolved for r in rows
                )

            wait_until(handed_off, "3 months completed and handed off")
            stats = http.get(f"{base}/api/internal/backfill-stats", timeout=30).json()
            listed = _page_through_books(http, base)

        # The operator's export, as a subprocess: one JSON line per resolved book.
        exported = subprocess.run(
            [sys.executable, "-m", "backfill.cli", "export", "--format", "jsonl"],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.splitlines()
        export_isbns = [json.loads(line)["isbn13"] for line in exported]
        assert len(export_isbns) == len(set(export_isbns))  # one line per book

        messages = drain(queue)
        rows = months_of(committed_db, labels)
        assert messages, "nothing reached the enrichment queue"
        assert all(0 < len(m["body"]["isbns"]) <= 100 for m in messages)
        assert all(m["properties"]["delivery_mode"] == 2 for m in messages)
        ids = [m["properties"]["message_id"] for m in messages]
        assert len(ids) == len(set(ids))  # one message per batch, no duplicate
        total = 0
        for label, row in rows.items():
            mine = [m["body"] for m in messages if (m["body"]["year"], m["body"]["month"]) == (
                row.year, row.month)]  # fmt: skip
            assert mine, f"{label}: nothing handed off"
            assert sorted(b["batch"] for b in mine) == list(range(1, len(mine) + 1))
            assert {b["job_id"] for b in mine} == {str(row.job_id)}
            sent = [isbn for b in mine for isbn in b["isbns"]]
            assert len(sent) == len(set(sent))  # no ISBN twice
            assert set(sent) == resolved_isbns(committed_db, row.id)
            assert row.isbns_resolved > 0 and row.isbns_queued == row.isbns_resolved == len(sent)
            total += len(sent)
        assert stats["progress"]["total_isbns_queued"] == total
        # The export, the books API and the enrichment queue hold the same books.
        queued = {isbn for m in messages for isbn in m["body"]["isbns"]}
        assert set(export_isbns) == {b["isbn13"] for b in listed} == queued
        assert len(listed) == len(export_isbns)


def _page_through_books(http: requests.Session, base: str) -> list[dict[str, Any]]:
    """Every resolved book through GET /api/internal/books, 25 a page."""
    listed: list[dict[str, Any]] = []
    page = 1
    while True:
        body = http.get(
            f"{base}/api/internal/books",
            params={"status": "resolved", "page": page, "page_size": 25},
            timeout=30,
        ).json()
        listed += body["books"]
        if page * body["page_size"] >= body["total"]:
            return listed
        page += 1


def test_books_found_by_re_resolution_are_handed_off_after_its_commit(
    sandbox: Sandbox, committed_db: str
) -> None:
    year, month = 2024, 5
    with session_factory(committed_db)() as s:
        scheduler.seed_months(s, year, year, start_month=month, end_month=month)
        s.commit()
    with enrichment_queue() as queue:
        off = make_settings(sandbox, committed_db, enrichment_queue="")
        on = make_settings(sandbox, committed_db, enrichment_queue=queue)
        assert runner.process(year, month, settings=off).status == "completed"
        row = months_of(committed_db, ["2024-05"])["2024-05"]
        found = sorted(resolved_isbns(committed_db, row.id))
        assert len(found) >= 3
        # As if three lookups had failed back then: unresolved, uncached, counted so.
        lost = found[:3]
        with session_factory(committed_db)() as s:
            s.execute(
                text(
                    "UPDATE candidates SET status = 'unresolved', isbn13 = NULL, resolver = NULL"
                    " WHERE backfill_id = :id AND isbn13 = ANY(:isbns)"
                ),
                {"id": row.id, "isbns": lost},
            )
            s.execute(text("DELETE FROM lookup_cache"))
            s.execute(text("DELETE FROM books WHERE isbn13 = ANY(:i)"), {"i": lost})
            s.execute(
                text("UPDATE backfill_log SET isbns_resolved = :n WHERE id = :id"),
                {"n": len(found) - 3, "id": row.id},
            )
            s.commit()
        # The month's own hand-off (the worker's, or the sweep's) sends what it has.
        from backfill import handoff

        with session_factory(committed_db)() as s:
            assert handoff.sweep(s, settings=on).sent == 1
        (first,) = drain(queue)
        assert sorted(first["body"]["isbns"]) == found[3:]

        result = rework.reresolve(month=(year, month), settings=on)
        assert result.resolved >= 3
        (later,) = drain(queue)
        assert later["body"]["batch"] == 2 and sorted(later["body"]["isbns"]) == lost
        row = months_of(committed_db, ["2024-05"])["2024-05"]
        assert row.status == "completed" and row.isbns_queued == row.isbns_resolved == len(found)
