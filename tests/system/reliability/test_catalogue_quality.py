"""The catalogue a real run produces ("done means" of the candidates and resolution issues).

Twelve months run through a real ``celery worker`` against the sandbox with its
catalogue traps in the generators' lists (same title by another author,
companion volumes, series siblings, generated ISBNs of other books,
translations, early ebooks) and 15% server errors on every API. ISBNdb and Open
Library hold their real per-second limits on the sandbox's side, and the client
is set to the same rates. The sandbox's ground truth grades what was stored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from backfill import scheduler
from backfill.db import session_factory
from backfill.models import Book, Candidate, Generation
from backfill.web import create_app
from tests.support.pipeline_support import hallucinated, in_scope
from tests.support.sandbox_fixture import Sandbox
from tests.system.reliability.harness import (
    FAST,
    book_checks,
    print_figures,
    seed_range,
    wait_settled,
)

FIRST, LAST = (2023, 1), (2023, 12)
LABELS = [f"2023-{m:02d}" for m in range(1, 13)]
BATCH = 20  # what seeded months ask for
APIS = ("gemini", "xai", "isbndb", "openlibrary", "googlebooks")
RATES = {"ISBNDB_RATE_PER_SECOND": "3", "OPENLIBRARY_RATE_PER_SECOND": "3"}

pytestmark = pytest.mark.slow


def _stored(url: str) -> tuple[dict[str, Book], list[Candidate], int]:
    with session_factory(url)() as s:
        books = {b.isbn13: b for b in s.scalars(select(Book))}
        candidates = list(s.scalars(select(Candidate)))
        answers = int(s.scalar(select(func.count()).select_from(Generation)) or 0)
    return books, candidates, answers


def test_twelve_months_with_traps_and_faults_store_only_right_books(
    worker_factory: Any, sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(
        seed=20231,
        trap_placement="head",
        error_rate=dict.fromkeys(APIS, 0.15),
        isbndb_rate_per_second=3,
        openlibrary_rate_identified=3,
        openlibrary_rate_anonymous=1,
    )
    worker_factory(concurrency=4, **{**sandbox.env(), **FAST, **RATES})
    seed_range(committed_db, FIRST, LAST)
    with session_factory(committed_db)() as s:
        result = scheduler.schedule(s, batch_size=12, year_range=(2023, 2023))
    assert result.triggered == 12
    settled = wait_settled(committed_db, timeout=420)
    stats = sandbox.stats()

    # -- all 12 months complete
    assert settled == {"completed": 12}, settled

    # -- each generator answered each month once: never asked again once it had
    answered = stats["answered_by_month"]
    books, candidates, answers = _stored(committed_db)
    for label in LABELS:
        got = answered.get(label, {})
        assert got and max(got.values()) == 1, (label, got)
    assert answers == sum(sum(v.values()) for v in answered.values())  # each one kept

    # -- 0 wrong ISBNs: every stored book is the right ISBN of a book of its month
    truth = sandbox.truth_isbns(LABELS[0], LABELS[-1])
    wrong = [
        (isbn, book.title, truth["isbns"].get(isbn, {}).get("role"))
        for isbn, book in books.items()
        if not truth["isbns"].get(isbn, {}).get("right")
    ]
    assert wrong == []
    misfiled = [
        isbn
        for isbn, book in books.items()
        if truth["isbns"][isbn]["month"] != f"{book.found_year:04d}-{book.found_month:02d}"
    ]
    assert misfiled == []

    # -- recall of the findable books the generators named (made-up ISBNs aside)
    findable: set[str] = set()
    for year, month in ((2023, m) for m in range(1, 13)):
        month_truth = sandbox.truth(year, month)
        for book in in_scope(month_truth, BATCH):
            if book["findable"] and not hallucinated(book, BATCH):
                findable.add(book["isbn13"])
    recall = len(findable & set(books)) / len(findable)

    # -- ISBNdb spent last and little; no 429 provoked
    isbndb = stats["calls"]["isbndb"]
    per_book = isbndb / len(books)
    statuses = stats["by_status"]
    print_figures(
        "12 months, traps, 15% 5xx on every API",
        books_stored=len(books),
        findable=len(findable),
        recall=round(recall, 4),
        wrong=len(wrong),
        isbndb_requests=isbndb,
        isbndb_per_resolved_book=round(per_book, 4),
        isbndb_endpoints={k: v for k, v in stats["by_endpoint"].items() if "isbndb" in k},
        requests=stats["calls"],
        answered=sum(sum(v.values()) for v in answered.values()),
        asked=sum(sum(v.values()) for v in stats["by_month"].values()),
    )
    assert recall >= 0.97, _why_missed(findable - set(books), truth, candidates)
    assert per_book <= 0.10
    assert statuses["isbndb"].get("429", 0) == 0
    assert statuses["openlibrary"].get("429", 0) == 0

    # -- every candidate kept with its fate, listed by the API; counters match them
    checks = book_checks(committed_db)
    assert checks["duplicates"] == 0 and checks["mismatched_months"] == []
    assert {c.status for c in candidates} >= {"resolved", "unresolved"}
    assert all(c.status != "pending" for c in candidates)
    app = create_app({"DATABASE_URL": committed_db})
    client = app.test_client()
    headers = {"X-Cron-Secret": "test-cron-secret"}
    by_month: dict[int, list[Candidate]] = {}
    for c in candidates:
        by_month.setdefault(c.backfill_id, []).append(c)
    for label in LABELS:
        body = client.get(f"/api/internal/months/{label}", headers=headers).json
        listed = body["candidates"]
        assert listed, label
        statuses_listed = [c["status"] for c in listed]
        generated = sum(s != "invalid_isbn" for s in statuses_listed)
        resolved = len({c["isbn13"] for c in listed if c["status"] == "resolved"})
        counters = (body["month"]["books_generated"], body["month"]["isbns_resolved"])
        assert counters == (generated, resolved), label
        for entry in listed:
            assert {"title", "authors", "status", "isbn13", "resolver", "generators"} <= set(entry)


def _why_missed(
    missed: set[str], truth: dict[str, Any], candidates: list[Candidate]
) -> list[dict[str, Any]]:
    """For a failure message: each missed book's candidate, status and evidence."""
    out = []
    for isbn in sorted(missed):
        book = truth["isbns"].get(isbn, {})
        title = book.get("book_title")
        found = [c for c in candidates if c.title == title]
        out.append(
            {
                "isbn": isbn,
                "title": title,
                "kind": book.get("kind"),
                "candidates": [(c.status, c.isbn13, c.evidence) for c in found],
            }
        )
    print(json.dumps(out, indent=1, default=str))
    return out
