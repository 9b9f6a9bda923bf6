"""ISBNdb's side of the catalogue: the editions (records) it holds for a book.

Every record carries a ``role`` (never shown to a client) saying what it really
is for the book it is filed under: one of the book's own editions, or a trap a
resolver must not take (see :mod:`backfill.sandbox.traps`). ISBN slots per book:
0 first print, 1 ebook/audio, 2 reprint, 3 same title by another author,
4 anniversary reissue, 5 companion volume, 6 series sibling, 7 another book
whose title extends this one, 8 translation, 9 an ISBN nobody knows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from stdnum import isbn

from backfill.sandbox import codes, words


class _Book(Protocol):
    """What an edition takes from its book (``backfill.sandbox.book.Book`` has it;
    a Protocol, because that module builds on this one)."""

    @property
    def title(self) -> str: ...
    @property
    def authors(self) -> tuple[str, ...]: ...
    @property
    def publisher(self) -> str: ...
    @property
    def publication_date(self) -> str: ...
    @property
    def year(self) -> int: ...
    @property
    def month(self) -> int: ...


# What a record really is (Edition.role). EDITION: the book's own; the rest are traps.
EDITION = "edition"
SAME_TITLE = "same_title_other_author"
COMPANION = "companion"
SIBLING = "series_sibling"
OTHER_BOOK = "other_book_isbn"
TRANSLATION = "translation"
PRINT_WORDS = ("hardcover", "paperback")


@dataclass(frozen=True)
class Edition:
    """One ISBNdb record: an edition of a book (or a same-titled book by someone else)."""

    isbn13: str
    title: str
    authors: tuple[str, ...]
    publisher: str
    date_published: str
    binding: str
    edition: str
    pages: int
    role: str = "edition"
    language: str = "en"

    def record(self, synopsis: str, subjects: tuple[str, ...]) -> dict[str, Any]:
        """The record as ISBNdb API v2 spells it."""
        isbn10 = _isbn10(self.isbn13)
        return {
            "title": self.title,
            "title_long": self.title,
            "isbn": isbn10,
            "isbn13": self.isbn13,
            "isbn10": isbn10,
            "authors": list(self.authors),
            "publisher": self.publisher,
            "date_published": self.date_published,
            "edition": self.edition,
            "binding": self.binding,
            "pages": self.pages,
            "language": self.language,
            "synopsis": synopsis,
            "subjects": list(subjects),
            "msrp": f"{9.99 + (self.pages % 20):.2f}",
            "dimensions": f"Height: 9.{self.pages % 10} Inches, Width: 6.1 Inches",
            "image": (
                f"https://images.isbndb.com/covers/{self.isbn13[-4:-2]}/"
                f"{self.isbn13[-2:]}/{self.isbn13}.jpg"
            ),
        }


def editions_of(
    rng: random.Random, book: _Book, ident: int, *, thorough: bool
) -> tuple[Edition, ...]:
    """ISBNdb's records for ``book``; the first one is its first print edition.

    ``thorough`` (a book the generators give no ISBN for) always gets the full set
    a title search must choose from: ebook, later paperback, a same-titled book by
    someone else, and often an anniversary reissue.
    """
    pages = rng.randint(180, 640)

    def edition(slot: int, **kw: Any) -> Edition:
        base = {
            "title": book.title,
            "authors": book.authors,
            "publisher": book.publisher,
            "date_published": book.publication_date,
            "binding": "Hardcover",
            "edition": "1st",
            "pages": pages,
        }
        return Edition(isbn13=codes.isbn13(ident, slot), **{**base, **kw})

    first = edition(0, binding=rng.choice(("Hardcover", "Hardcover", "Paperback")))
    found = [first]
    if thorough or rng.random() < 0.5:
        # The ebook can come out a few days *before* the print edition.
        day = max(1, int(book.publication_date[-2:]) - rng.randint(0, 5))
        found.append(
            edition(
                1, binding="Kindle Edition", date_published=book.publication_date[:8] + f"{day:02d}"
            )
        )
    if thorough or rng.random() < 0.4:
        found.append(
            edition(
                2,
                binding="Paperback",
                edition="Reprint",
                date_published=str(book.year + rng.randint(1, 3)),
            )
        )
    if thorough:
        other = tuple(_name(rng) for _ in book.authors)
        earlier = max(codes.YEAR_MIN, book.year - rng.randint(3, 30))
        found.append(
            edition(
                3,
                role=SAME_TITLE,
                authors=other,
                date_published=f"{earlier}-{rng.randint(1, 12):02d}-01",
                publisher=rng.choice(words.PUBLISHERS),
                pages=rng.randint(150, 500),
            )
        )
        if rng.random() < 0.6:
            # Years later, but not far into the future of a recent book.
            reissue = min(book.year + rng.randint(10, 25), max(book.year + 1, 2025))
            found.append(
                edition(
                    4,
                    binding="Hardcover",
                    edition="Anniversary Edition",
                    date_published=f"{reissue}-{book.month:02d}-01",
                )
            )
    return tuple(found)


def is_print(edition: Edition) -> bool:
    """Whether the binding is a printed book (not an ebook or an audiobook)."""
    return any(word in edition.binding.lower() for word in PRINT_WORDS)


def isbn10(isbn13: str) -> str:
    """The ISBN-10 form of a 978 ISBN-13."""
    return _isbn10(isbn13)


def _name(rng: random.Random) -> str:
    return f"{rng.choice(words.FIRST_NAMES)} {rng.choice(words.LAST_NAMES)}"


def _isbn10(isbn13: str) -> str:
    return str(isbn.to_isbn10(isbn13))
