"""Validation, merging and edition choice: pure functions, no I/O."""

from __future__ import annotations

import pytest

from backfill.config import load_settings
from backfill.dedupe import Candidate, merge, normalise, title_similarity, valid_isbn13
from backfill.providers.base import BookCandidate, Generation
from backfill.resolve import choose_edition

SETTINGS = load_settings()


def book(title: str, author: str, isbn: str | None = None, source: str = "gemini") -> BookCandidate:
    return BookCandidate(title, [author], None, None, isbn, "notable", source)


def generation(provider: str, *books: BookCandidate) -> Generation:
    return Generation(provider, list(books), 10, 20, "m", "v")


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


def test_normalise_folds_case_accents_and_punctuation() -> None:
    assert normalise("Cien años de soledad!") == "cien anos de soledad"
    assert normalise("Pride & Prejudice") == "pride and prejudice"
    assert normalise("  The  Road: A Novel ") == "the road a novel"


def test_subtitles_match_but_short_titles_do_not_swallow_long_ones() -> None:
    assert title_similarity("The Women", "The Women: A Novel") == 1.0
    assert title_similarity("It", "It Ends with Us") < 0.6
    # ISBNdb's titles often carry the series: still the same book
    assert title_similarity("Dune", "Dune (Dune Chronicles, Book 1)") == 1.0
    assert title_similarity("The Road", "The Road - A Novel") == 1.0
    assert title_similarity("Dune", "Dune Messiah") < 0.6


def test_merge_drops_duplicates_across_and_within_lists() -> None:
    gemini = generation(
        "gemini",
        book("Fourth Wing", "Rebecca Yarros"),
        book("Tomorrow, and Tomorrow, and Tomorrow", "Gabrielle Zevin", "9780593321201"),
        book("fourth wing", "Yarros, Rebecca"),  # repeated by the same model
    )
    xai = generation(
        "xai",
        book("Fourth Wing (The Empyrean)", "Rebecca Yarros", "9781649374042", source="xai"),
        book("Demon Copperhead", "Barbara Kingsolver", source="xai"),
    )
    merged = merge([gemini, xai], 0.6)
    assert [c.title for c in merged] == [
        "Fourth Wing",
        "Tomorrow, and Tomorrow, and Tomorrow",
        "Demon Copperhead",
    ]
    wing = merged[0]
    assert wing.generator == "both" and wing.isbn13 == "9781649374042"  # filled from xAI
    assert [c.generator for c in merged[1:]] == ["gemini", "xai"]


def test_same_title_by_different_authors_stays_two_books() -> None:
    merged = merge(
        [
            generation(
                "gemini", book("The Women", "Kristin Hannah"), book("The Women", "T.C. Boyle")
            )
        ],
        0.6,
    )
    assert len(merged) == 2


def test_invalid_isbn_is_never_the_books_isbn_and_marks_a_hallucination() -> None:
    merged = merge([generation("gemini", book("Beloved", "Toni Morrison", "9780394535979"))], 0.6)
    assert merged[0].isbn13 is None and merged[0].invalid_isbn == "9780394535979"
    # the other generator names the same book without an ISBN: not made up
    merged = merge(
        [
            generation("gemini", book("Beloved", "Toni Morrison", "9780394535979")),
            generation("xai", book("Beloved", "Toni Morrison", None, source="xai")),
        ],
        0.6,
    )
    assert (merged[0].isbn13, merged[0].invalid_isbn) == (None, None)
    # the other generator's valid ISBN for the same book wins
    merged = merge(
        [
            generation("gemini", book("Beloved", "Toni Morrison", "9780394535979")),
            generation("xai", book("Beloved", "Toni Morrison", "9780394535975", source="xai")),
        ],
        0.6,
    )
    assert (merged[0].isbn13, merged[0].invalid_isbn) == ("9780394535975", None)


def candidate(title: str, author: str, date: str | None = None) -> Candidate:
    return Candidate(title, [author], None, date, None, None, None, {"gemini"})


def edition(isbn: str, title: str, author: str, date: str, binding: str) -> dict[str, object]:
    return {"isbn13": isbn, "title": title, "authors": [author], "date_published": date,
            "binding": binding}  # fmt: skip


def test_choose_edition_prefers_the_earliest_print_edition_of_the_right_year() -> None:
    editions = [
        edition("9780000000002", "Piranesi", "Susanna Clarke", "2020-09-15", "Kindle Edition"),
        edition("9780000000019", "Piranesi", "Clarke, Susanna", "2021-06-01", "Paperback"),
        edition("9780000000026", "Piranesi", "Susanna Clarke", "2020-09-20", "Hardcover"),
        edition("9780000000033", "Piranesi", "Susanna Clarke", "2020-09-15", "Audio CD"),
        edition("9780000000040", "Piranesi", "Someone Else", "2020-09-01", "Hardcover"),
        edition("9780000000057", "Piranesi Unbound", "Susanna Clarke", "2020-01-01", "Hardcover"),
        edition("9780000000064", "Piranesi", "Susanna Clarke", "2015-01-01", "Hardcover"),
    ]
    chosen = choose_edition(candidate("Piranesi", "Susanna Clarke"), editions, 2020, SETTINGS)
    assert chosen is not None and chosen["isbn13"] == "9780000000026"


def test_choose_edition_uses_the_books_own_year_and_tolerates_one_year() -> None:
    editions = [edition("9780000000019", "Piranesi", "Susanna Clarke", "2021-06-01", "Paperback")]
    chosen = choose_edition(candidate("Piranesi", "Susanna Clarke"), editions, 2020, SETTINGS)
    assert chosen is not None  # one year off is accepted when nothing better exists
    assert (
        choose_edition(
            candidate("Piranesi", "Susanna Clarke", "2018-01-01"), editions, 2020, SETTINGS
        )
        is None
    )
    assert choose_edition(candidate("Piranesi", "Susanna Clarke"), [], 2020, SETTINGS) is None
