"""One book of the sandbox's catalogue: the truth, the generators' answers, and what
each search API (ISBNdb, Open Library, Google Books) holds about it.

Kinds (what the generators quote as the book's ISBN):

* ``isbn``: the right ISBN (sometimes hyphenated or as an ISBN-10).
* ``no_isbn``: none; a title search must find it.
* ``bad_checksum``: an ISBN failing its checksum (a hallucination).
* ``unknown``: a valid ISBN nobody knows.
* ``wrong_isbn``: a valid ISBN ISBNdb knows, of *another* book (a series sibling by
  the same author, or an older book whose title extends this one); see
  :mod:`backfill.sandbox.traps`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backfill.sandbox.editions import EDITION, Edition, is_print

ISBN, NO_ISBN, BAD_CHECKSUM, UNKNOWN = "isbn", "no_isbn", "bad_checksum", "unknown"
WRONG_ISBN = "wrong_isbn"
SEARCH_SOURCES = ("openlibrary", "googlebooks", "isbndb")


@dataclass(frozen=True)
class Book:
    """One book of a month and every record the sandbox files under it."""

    year: int
    month: int
    index: int
    kind: str
    title: str
    authors: tuple[str, ...]
    publisher: str
    publication_date: str
    reason: str
    subject: str
    # Records ISBNdb's title search returns for this title: the book's own editions
    # and the traps that share its title words (their ``role`` says which is which).
    editions: tuple[Edition, ...]
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Records known by ISBN only (translations: another title, another language).
    extra: tuple[Edition, ...] = ()
    # ISBN-13s in the order the search APIs list them; empty: by ISBN.
    search_order: tuple[str, ...] = ()
    # The search APIs whose title search lists the book's own editions.
    sources: frozenset[str] = frozenset({"isbndb"})
    # Trap names that only the catalogue knows (the quoted ISBN's story).
    quoted_trap: str | None = None
    # One of the month's trap books (built around a trap, after the other books).
    trap_book: bool = False

    @property
    def isbn13(self) -> str | None:
        """The ISBN a correct pipeline stores: the book's first print edition."""
        own = [e for e in self.editions if e.role == EDITION]
        return own[0].isbn13 if own else None

    @property
    def findable(self) -> bool:
        """Whether a correct resolver can reach the right ISBN by some search."""
        return self.isbn13 is not None and bool(self.sources)

    def searched(self) -> list[Edition]:
        """The title-searchable records, in the order the search APIs list them."""
        if not self.search_order:
            return sorted(self.editions, key=lambda e: e.isbn13)
        rank = {isbn: i for i, isbn in enumerate(self.search_order)}
        return sorted(self.editions, key=lambda e: (rank.get(e.isbn13, len(rank)), e.isbn13))

    def all_records(self) -> tuple[Edition, ...]:
        """Every record filed under this book, searchable or not."""
        return self.editions + self.extra

    def record(self, edition: Edition) -> dict[str, Any]:
        """ISBNdb's record for one of the records filed under this book."""
        return edition.record(f"{self.reason} {edition.title}, {self.publisher}.", (self.subject,))

    def traps(self) -> list[str]:
        """The names of the traps a resolver meets on the way to this book."""
        names = {e.role for e in self.all_records() if e.role != EDITION}
        if self.quoted_trap:
            names.add(self.quoted_trap)
        first = self.isbn13
        first_date = next((e.date_published for e in self.editions if e.isbn13 == first), "")
        if any(
            e.role == EDITION
            and not is_print(e)
            and e.date_published[:4] == first_date[:4]
            and e.date_published < first_date
            for e in self.editions
        ):
            names.add("earlier_ebook")
        return sorted(names)

    def decoys(self) -> list[dict[str, Any]]:
        """The trap records (not the book's own editions), as truth reports them."""
        return [
            {
                "isbn13": e.isbn13,
                "trap": e.role,
                "title": e.title,
                "authors": list(e.authors),
                "date_published": e.date_published,
                "binding": e.binding,
                "language": e.language,
            }
            for e in self.all_records()
            if e.role != EDITION
        ]
