"""Merging the generators' answers into a month's candidates (real PostgreSQL, rolled back)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill.dedupe import claimed_isbns, store_answer, valid_isbn13
from backfill.models import BackfillLog, Candidate, Generation
from backfill.providers.base import BookCandidate
from backfill.providers.base import Generation as Answer
from backfill.scheduler import seed_months

ROAD = "9780307387899"  # The Road, McCarthy (Vintage)
ROAD_HC = "9780307265432"  # The Road, first edition (Knopf)


def book(
    title: str, author: str, isbn: str | None = None, source: str = "gemini", **kw: Any
) -> BookCandidate:
    return BookCandidate(title, [author], kw.get("publisher"), None, isbn, "notable", source)


def answer(provider: str, *books: BookCandidate) -> Answer:
    return Answer(provider, list(books), 10, 20, "m", "v")


@pytest.fixture
def month(session: Session) -> int:
    seed_months(session, 2006, 2006, start_month=9, end_month=9)
    row = session.scalar(select(BackfillLog).where(BackfillLog.year == 2006))
    assert row is not None
    return row.id


def stored(session: Session, month: int) -> list[Candidate]:
    query = select(Candidate).where(Candidate.backfill_id == month).order_by(Candidate.id)
    return list(session.scalars(query))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9780306406157", "9780306406157"),
        ("978-0-306-40615-7", "9780306406157"),
        ("0306406152", "9780306406157"),  # ISBN-10 converted
        ("9780306406158", None),  # wrong checksum
        ("0306406153", None),
        ("9770306406157", None),  # not a book prefix
        ("", None),
        (None, None),
        ("not an isbn", None),
    ],
)
def test_valid_isbn13(raw: str | None, expected: str | None) -> None:
    assert valid_isbn13(raw) == expected


def test_duplicates_within_and_across_lists_are_one_candidate(session: Session, month: int) -> None:
    store_answer(
        session,
        month,
        None,
        answer(
            "gemini",
            book("The Road", "Cormac McCarthy", ROAD),
            book("The Road", "Cormac McCarthy"),  # named twice in one list
            book("Special Topics in Calamity Physics", "Marisha Pessl"),
        ),
        batch_size=20,
    )
    store_answer(
        session,
        month,
        None,
        answer("xai", book("the road: a novel", "C. McCarthy", ROAD_HC, source="xai")),
        batch_size=20,
    )
    rows = stored(session, month)
    assert [r.title for r in rows] == ["The Road", "Special Topics in Calamity Physics"]
    road = rows[0]
    assert set(road.generators) == {"gemini", "xai"}
    # Two generators' different valid ISBNs for one book: both kept, both tried.
    assert claimed_isbns(road) == [ROAD, ROAD_HC]
    assert road.generators["xai"]["title"] == "the road: a novel"
    assert len(session.scalars(select(Generation)).all()) == 2


def test_two_books_by_one_author_are_not_merged_on_shared_words(
    session: Session, month: int
) -> None:
    store_answer(
        session,
        month,
        None,
        answer(
            "gemini",
            book("The Girl with the Dragon Tattoo", "Stieg Larsson"),
            book("The Girl Who Played with Fire", "Stieg Larsson"),
            book("The Road", "Cormac McCarthy"),
            book("The Road to Wigan Pier", "George Orwell"),
            book("The Road", "Jack London"),  # same title, another author
        ),
        batch_size=20,
    )
    assert len(stored(session, month)) == 5


def test_a_made_up_isbn_is_kept_as_invalid_until_a_generator_names_the_book_properly(
    session: Session, month: int
) -> None:
    store_answer(
        session,
        month,
        None,
        answer("gemini", book("Half of a Yellow Sun", "Chimamanda Ngozi Adichie", "9780007200281")),
        batch_size=20,
    )
    (row,) = stored(session, month)
    assert row.status == "invalid_isbn"
    assert row.generators["gemini"]["isbns"] == ["9780007200281"]  # what it claimed, kept
    assert claimed_isbns(row) == []
    store_answer(
        session,
        month,
        None,
        answer("xai", book("Half of a Yellow Sun", "Chimamanda Adichie", None, source="xai")),
        batch_size=20,
    )
    (row,) = stored(session, month)
    assert row.status == "pending"


def test_an_unresolved_book_is_pending_again_when_a_new_isbn_is_claimed(
    session: Session, month: int
) -> None:
    store_answer(
        session, month, None, answer("gemini", book("The Road", "Cormac McCarthy")), batch_size=5
    )
    (row,) = stored(session, month)
    row.status = "unresolved"
    session.flush()
    store_answer(
        session,
        month,
        None,
        answer("xai", book("The Road", "Cormac McCarthy", ROAD, source="xai")),
        batch_size=5,
    )
    (row,) = stored(session, month)
    assert row.status == "pending" and claimed_isbns(row) == [ROAD]
