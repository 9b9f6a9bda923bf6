"""Every generated book kept, every generator answer paid for once (issue: candidates).

A month runs through the real runner (advisory lock, attempt rows, commits)
against the sandbox over real HTTP and the real PostgreSQL. The sandbox's
``by_month`` counts the generate requests that reached each model, so "asked
again" is measured on the API's side, not ours.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, text

from backfill import rework, runner
from backfill.candidates import counts
from backfill.config import Settings
from backfill.db import session_factory
from backfill.dedupe import store_answer
from backfill.models import BackfillLog, Book, Candidate, Generation, MonthAttempt
from backfill.providers.base import BookCandidate
from backfill.providers.base import Generation as Answer
from backfill.scheduler import seed_months
from tests.support.pipeline_support import make_settings
from tests.support.sandbox_fixture import Sandbox

YEAR, MONTH = 2024, 5
LABEL = f"{YEAR}-{MONTH:02d}"


@pytest.fixture
def settings(sandbox: Sandbox, committed_db: str) -> Settings:
    with session_factory(committed_db)() as s:
        seed_months(s, YEAR, YEAR, start_month=MONTH, end_month=MONTH)
        s.commit()
    return make_settings(sandbox, committed_db, provider_retry_backoff_seconds=0.01)


def month_row(url: str) -> BackfillLog:
    with session_factory(url)() as s:
        row = s.scalar(select(BackfillLog).where(BackfillLog.year == YEAR))
        assert row is not None
        return row


def rows(url: str, model: Any, *where: Any) -> list[Any]:
    with session_factory(url)() as s:
        return list(s.scalars(select(model).where(*where)))


def asked(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.stats()["by_month"].get(LABEL, {}))


def assert_counters_add_up(url: str) -> None:
    row = month_row(url)
    with session_factory(url)() as s:
        counted = counts(s, row.id)
    assert (row.books_generated, row.isbns_resolved) == (
        counted.books_generated,
        counted.isbns_resolved,
    )
    current = rows(url, Candidate, Candidate.superseded_at.is_(None))
    assert counted.books_generated == sum(c.status != "invalid_isbn" for c in current)
    assert counted.isbns_resolved == len({c.isbn13 for c in current if c.status == "resolved"})


def test_a_retry_resolves_the_stored_candidates_and_asks_no_generator_again(
    settings: Settings, sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(error_rate={"isbndb": 1.0})  # ISBNdb stays down: the attempt fails
    first = runner.process(YEAR, MONTH, settings=settings)
    assert first.status == "retry" and "isbndb" in first.message
    stored = rows(committed_db, Generation)
    assert sorted(g.provider for g in stored) == ["gemini", "xai"]
    assert rows(committed_db, Candidate)  # the lists were kept, though the attempt failed
    assert asked(sandbox) == {"gemini": 1, "xai": 1}

    sandbox.configure(error_rate={"isbndb": 0.0})
    second = runner.process(YEAR, MONTH, settings=settings)
    assert second.status == "completed"
    assert asked(sandbox) == {"gemini": 1, "xai": 1}  # never asked again
    attempts = rows(committed_db, MonthAttempt)
    assert [a.generators_reused for a in attempts] == [0, 2]
    assert [a.gemini_calls + a.xai_calls for a in attempts] == [2, 0]
    statuses = {c.status for c in rows(committed_db, Candidate)}
    assert "pending" not in statuses and "resolved" in statuses
    assert_counters_add_up(committed_db)


def test_a_generator_that_failed_is_asked_again_the_other_is_not(
    settings: Settings, sandbox: Sandbox, committed_db: str
) -> None:
    tries = settings.provider_max_tries
    sandbox.configure(
        fail_months={LABEL: {"xai": tries, "status": 503}}, error_rate={"isbndb": 1.0}
    )
    assert runner.process(YEAR, MONTH, settings=settings).status == "retry"
    assert [g.provider for g in rows(committed_db, Generation)] == ["gemini"]
    before = {c.id for c in rows(committed_db, Candidate)}

    sandbox.configure(error_rate={"isbndb": 0.0})
    assert runner.process(YEAR, MONTH, settings=settings).status == "completed"
    assert asked(sandbox) == {"gemini": 1, "xai": tries + 1}
    assert sorted(g.provider for g in rows(committed_db, Generation)) == ["gemini", "xai"]
    after = rows(committed_db, Candidate)
    assert before < {c.id for c in after}  # xAI's own books were added
    assert any(set(c.generators) == {"gemini", "xai"} for c in after)  # and merged
    assert_counters_add_up(committed_db)


def test_every_book_is_kept_with_its_fate(
    settings: Settings, sandbox: Sandbox, committed_db: str
) -> None:
    assert runner.process(YEAR, MONTH, settings=settings).status == "completed"
    truth = {b["title"]: b for b in sandbox.truth(YEAR, MONTH)["books"]}
    kept = rows(committed_db, Candidate)
    by_kind: dict[str, set[str]] = {}
    for candidate in kept:
        book = truth.get(candidate.title)
        if book:
            by_kind.setdefault(book["kind"], set()).add(candidate.status)
    assert by_kind["unknown"] == {"unresolved"}  # kept, with its fate
    assert by_kind["bad_checksum"] <= {"invalid_isbn", "resolved"}
    assert "invalid_isbn" in by_kind["bad_checksum"]
    for candidate in kept:
        assert candidate.generators and candidate.tries >= (candidate.status != "invalid_isbn")
        if candidate.status == "resolved":
            assert candidate.isbn13 and candidate.resolver and candidate.evidence["matched"]
        if candidate.status == "unresolved":
            assert candidate.evidence["why"]
    assert_counters_add_up(committed_db)


def _answer(books: int, **overrides: Any) -> Answer:
    entries = [
        BookCandidate(
            title=f"Distinct Book Number {i} of the Sea",
            authors=[f"Author{i} Surname{i}"],
            publisher="P",
            publication_date="2024-05-01",
            isbn=None,
            reason="r",
            source="gemini",
        )
        for i in range(books)
    ]
    for key, value in overrides.items():
        setattr(entries[0], key, value)
    return Answer("gemini", entries, 10, 10, "gemini-x", "v1")


def test_an_answer_is_capped_at_batch_size_and_every_string_is_bounded(
    session: Any,
) -> None:
    seed_months(session, YEAR, YEAR, start_month=MONTH, end_month=MONTH)
    row = session.scalar(select(BackfillLog).where(BackfillLog.year == YEAR))
    long = _answer(
        60,
        title="T" * 5000,
        authors=["A" * 900] * 50,
        publication_date="2024-05-01 (first printing, limited, signed edition)" * 3,
        publisher="P" * 900,
        reason="R" * 9000,
        isbn="9" * 80,
    )
    generation = store_answer(session, row.id, None, long, batch_size=20)
    assert len(generation.books) == 20
    stored = session.scalars(select(Candidate).where(Candidate.backfill_id == row.id)).all()
    assert len(stored) == 20
    first = min(stored, key=lambda c: c.id)
    assert len(first.title) == 500 and len(first.authors) == 10
    assert max(map(len, first.authors)) == 200
    assert len(first.publication_date) == 64 and len(first.reason) == 1000
    assert first.status == "invalid_isbn"  # the only ISBN it was named with is made up


def test_regenerate_supersedes_and_asks_again(
    settings: Settings, sandbox: Sandbox, committed_db: str
) -> None:
    assert runner.process(YEAR, MONTH, settings=settings).status == "completed"
    first = rows(committed_db, Candidate)
    with session_factory(committed_db)() as s:
        result = rework.regenerate(s, YEAR, MONTH)
        s.commit()
    assert result.candidates_superseded == len(first) and result.generations_superseded == 2
    row = month_row(committed_db)
    assert (row.status, row.books_generated, row.completed_at) == ("pending", 0, None)
    assert runner.process(YEAR, MONTH, settings=settings).status == "completed"
    assert asked(sandbox) == {"gemini": 2, "xai": 2}
    everything = rows(committed_db, Candidate)
    old = [c for c in everything if c.superseded_at is not None]
    assert len(old) == len(first)  # kept, marked superseded
    assert_counters_add_up(committed_db)


def test_reresolve_finds_books_again_without_any_llm_call(
    settings: Settings, sandbox: Sandbox, committed_db: str
) -> None:
    assert runner.process(YEAR, MONTH, settings=settings).status == "completed"
    resolved = [c for c in rows(committed_db, Candidate) if c.status == "resolved"]
    assert resolved
    # As if their lookups had failed back then: unresolved, nothing cached, no book.
    lost = resolved[:3]
    with session_factory(committed_db)() as s:
        ids = [c.id for c in lost]
        isbns = [c.isbn13 for c in lost]
        s.execute(
            text(
                "UPDATE candidates SET status = 'unresolved', isbn13 = NULL, resolver = NULL"
                " WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        )
        s.execute(text("DELETE FROM lookup_cache"))
        s.execute(text("DELETE FROM books WHERE isbn13 = ANY(:i)"), {"i": isbns})
        s.commit()
    before = asked(sandbox)

    result = rework.reresolve(month=(YEAR, MONTH), settings=settings)
    assert result.months == [LABEL] and result.resolved >= 3
    assert asked(sandbox) == before  # no generator was asked
    again = {c.id: c for c in rows(committed_db, Candidate)}
    assert all(again[i].status == "resolved" and again[i].reresolved for i in ids)
    assert {again[i].isbn13 for i in ids} == set(isbns)
    assert month_row(committed_db).status == "completed"  # stays completed
    assert len(rows(committed_db, Book, Book.isbn13.in_(isbns))) == 3
    assert_counters_add_up(committed_db)

    # What is still open was answered "not found" lately: a second run pays nothing.
    calls = sandbox.stats()["calls"]
    quiet = rework.reresolve(month=(YEAR, MONTH), settings=settings)
    assert quiet.resolved == 0 and quiet.tried > 0
    assert sandbox.stats()["calls"] == calls
    # ... and with --older-than, candidates tried just now are not even looked at.
    assert rework.reresolve(older_than=dt.timedelta(days=7), settings=settings).tried == 0
