"""The generators' prompts and how their answers are read (pure: no HTTP, no database).

The clients that send them are tested against the sandbox in
tests/integration/test_providers.py."""

from __future__ import annotations

import pytest

from backfill.exceptions import ProviderError
from backfill.providers import prompts


def test_both_prompt_variants_name_the_month_and_the_batch_size() -> None:
    baseline = prompts.build_prompt("baseline", 1999, 3, 7)
    recent = prompts.build_prompt("contemporary-notable", 2021, 11, 20)
    assert "1999-03" in baseline and "up to 7 books" in baseline
    assert "2021-11" in recent and "up to 20 books" in recent
    assert "culturally notable" in baseline and "prize lists" in recent
    assert prompts.prompt_version("baseline") != prompts.prompt_version("contemporary-notable")
    assert len(prompts.prompt_version("baseline")) == 12
    assert prompts.variant_for(2019) == "baseline"
    assert prompts.variant_for(2020) == "contemporary-notable"


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"items": []}', '{"books": []}', '{"books": [{"title": ""}, 3]}'],
)
def test_an_answer_without_a_usable_book_is_a_provider_error(text: str) -> None:
    with pytest.raises(ProviderError):
        prompts.parse_books("gemini", text)


def test_one_bad_entry_does_not_spoil_the_list() -> None:
    books = prompts.parse_books(
        "xai",
        '{"books": [{"title": "Kept", "authors": "One Author", "isbn13": null}, {"authors": []}]}',
    )
    assert [(b.title, b.authors, b.isbn) for b in books] == [("Kept", ["One Author"], None)]


def test_answers_in_near_shapes_are_read_too() -> None:
    # a bare list, a single "author", "isbn_13" / an ISBN-10 under "isbn"
    books = prompts.parse_books(
        "xai",
        '[{"title": "Dune", "author": "Frank Herbert", "isbn_13": "9780441013593"},'
        ' {"title": "Beloved", "authors": ["Toni Morrison"], "isbn": "0394535979",'
        ' "published_date": "1987-09"}]',
    )
    assert [(b.title, b.authors, b.isbn, b.publication_date) for b in books] == [
        ("Dune", ["Frank Herbert"], "9780441013593", None),
        ("Beloved", ["Toni Morrison"], "0394535979", "1987-09"),
    ]
