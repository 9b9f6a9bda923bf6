"""Is this hit the candidate's book? The resolver's rules, on real books (pure, no I/O)."""

from __future__ import annotations

from backfill import judge
from backfill.providers.base import Hit


def hit(
    title: str,
    authors: tuple[str, ...],
    date: str | None,
    isbn: str = "9780307265432",
    binding: str | None = "Hardcover",
    source: str = "isbndb",
) -> Hit:
    return Hit(source, title, authors, date, (isbn,), True, binding, "en", isbn, {})


ROAD = judge.wanted([("The Road", ["Cormac McCarthy"])], "2006-09-26", 2006, 9)


def test_the_book_itself_is_accepted_with_a_subtitle_or_series_note() -> None:
    assert judge.judge(ROAD, hit("The Road", ("McCarthy, Cormac",), "2006-09-26")).accepted
    assert judge.judge(ROAD, hit("The Road: A Novel", ("Cormac McCarthy",), "2006")).accepted


def test_another_book_whose_title_extends_it_is_refused() -> None:
    wigan = hit("The Road to Wigan Pier", ("George Orwell",), "1937")
    verdict = judge.judge(ROAD, wigan)
    assert not verdict.accepted and "another title" in verdict.why


def test_the_same_title_by_another_author_is_refused() -> None:
    london = hit("The Road", ("Jack London",), "2006")  # a reissue in the same year
    verdict = judge.judge(ROAD, london)
    assert not verdict.accepted and "another author" in verdict.why


def test_a_companion_or_study_guide_is_never_the_book() -> None:
    for title in (
        "The Road: A Reader's Companion",
        "Study Guide: The Road",
        "Summary of The Road",
        "The Road (SparkNotes Literature Guide)",
    ):
        verdict = judge.judge(ROAD, hit(title, ("Cormac McCarthy",), "2006-09-26"))
        assert not verdict.accepted, title


def test_a_year_out_of_range_or_unknown_is_refused() -> None:
    assert not judge.judge(ROAD, hit("The Road", ("Cormac McCarthy",), "2012")).accepted
    assert not judge.judge(ROAD, hit("The Road", ("Cormac McCarthy",), None)).accepted
    assert judge.judge(ROAD, hit("The Road", ("Cormac McCarthy",), "2007-03")).accepted


def test_a_candidate_without_an_author_is_never_resolved() -> None:
    anonymous = judge.wanted([("The Road", [])], "2006", 2006, 9)
    verdict = judge.judge(anonymous, hit("The Road", ("Cormac McCarthy",), "2006"))
    assert not verdict.accepted and "no author" in verdict.why


def test_any_generators_spelling_of_the_author_counts() -> None:
    want = judge.wanted(
        [("The Road", ["Cormac McCarhty"]), ("The Road", ["C. McCarthy"])], "2006", 2006, 9
    )
    assert judge.judge(want, hit("The Road", ("Cormac McCarthy",), "2006")).accepted


def test_choice_exact_title_then_print_then_earliest_date_in_the_year() -> None:
    ebook = hit("The Road", ("Cormac McCarthy",), "2006-09-01", "9780307277930", "Kindle Edition")
    later = hit("The Road", ("Cormac McCarthy",), "2006-11-01", "9780307387899", "Paperback")
    first = hit("The Road", ("Cormac McCarthy",), "2006-09-26", "9780307265432", "Hardcover")
    subtitled = hit("The Road: A Novel", ("Cormac McCarthy",), "2006-09-01", "9780307386458")
    best, rejected = judge.choose(ROAD, [ebook, later, subtitled, first])
    assert best is first and rejected == []


def test_nothing_accepted_gives_none_and_says_why() -> None:
    best, rejected = judge.choose(
        ROAD,
        [
            hit("The Road to Wigan Pier", ("George Orwell",), "1937"),
            hit("The Road", ("Jack London",), "1907"),
        ],
    )
    assert best is None and len(rejected) == 2 and all(r["why"] for r in rejected)


def test_a_record_dated_in_another_month_is_left_for_it() -> None:
    assert judge.other_month(hit("The Road", (), "2006-08-30"), 2006, 9) == "2006-08"
    assert judge.other_month(hit("The Road", (), "2006-09-26"), 2006, 9) is None
    assert judge.other_month(hit("The Road", (), "2006"), 2006, 9) is None  # no month: here
