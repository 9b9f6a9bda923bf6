"""How a generator's answer differs from the truth: spelling variants and stated ISBNs.

Kept apart from the catalogue so the rules a test may want to reason about (what
an xAI title can look like, which ISBN forms a model quotes) read in one place.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from stdnum import isbn

from backfill.sandbox import codes

if TYPE_CHECKING:
    from backfill.sandbox.book import Book


def title(rng: random.Random, text: str) -> str:
    """The title as a second model might write it: same words, other case or punctuation."""
    roll = rng.random()
    if roll < 0.35:
        return text
    if roll < 0.55:  # sentence case
        return text[:1] + text[1:].lower()
    if roll < 0.7:
        if ":" in text or "," in text:
            return text.replace(":", " -").replace(",", "")
        return text.title()  # "Of" and "The" capitalised
    if roll < 0.85 and text.startswith("The "):
        return text[4:]
    return text if ":" in text else f"{text}: A Novel"


def author(rng: random.Random, name: str) -> str:
    """An author's name with an initial or a small misspelling, as models produce."""
    first, _, last = name.partition(" ")
    roll = rng.random()
    if roll < 0.55 or len(last) < 4:
        return name
    if roll < 0.8:
        return f"{first[0]}. {last}"
    i = rng.randint(1, len(last) - 2)  # swap two letters inside the surname
    return f"{first} {last[:i]}{last[i + 1]}{last[i]}{last[i + 2 :]}"


def stated_isbn(rng: random.Random, book: Book, ident: int) -> str | None:
    """The ISBN a generator quotes for ``book`` (per the book's kind)."""
    from backfill.sandbox.book import BAD_CHECKSUM, ISBN, UNKNOWN

    if book.kind == ISBN and book.isbn13:
        roll = rng.random()
        if roll < 0.7:
            return book.isbn13
        return codes.hyphenate(book.isbn13) if roll < 0.9 else str(isbn.to_isbn10(book.isbn13))
    if book.kind == BAD_CHECKSUM and book.isbn13:
        wrong = (int(book.isbn13[-1]) + rng.randint(1, 9)) % 10
        return book.isbn13[:-1] + str(wrong)
    if book.kind == UNKNOWN:
        return codes.isbn13(ident, codes.UNKNOWN_SLOT)
    return None
