"""The sandbox's deterministic catalogue: the same month always yields the same books.

Each month (seeded by ``YYYY-MM`` alone, never by the fault seed) holds 25-35 books
in a known mix, so every path of the pipeline is exercised:

* ``isbn``: the generators quote the right ISBN (sometimes hyphenated or as an
  ISBN-10); ISBNdb knows it.
* ``no_isbn``: no ISBN in the answer; ISBNdb finds it by title, among several
  editions (hardcover, ebook, later paperback, an anniversary reissue, and a
  different book of the same title by another author in another year). The right
  answer is the earliest *print* edition by the book's author in the book's year.
* ``bad_checksum``: the quoted ISBN fails its checksum (a hallucination); the
  book itself exists in ISBNdb under its title.
* ``unknown``: a valid-looking ISBN ISBNdb has never heard of (404, absent from bulk,
  and no title match).

Gemini answers the month's main list; xAI answers about 70% of the same books
(with slightly different title casing/punctuation and author spelling) plus a
few of its own, so the merge's fuzzy de-duplication has real work to do.

After those come 3-5 *trap books* per month (:mod:`backfill.sandbox.traps`:
companion volumes, same titles by other authors, series siblings, ISBNs of other
books, translations, earlier ebooks), listed at the end of Gemini's list unless
``trap_placement`` is ``"head"``. Open Library and Google Books serve the same
records as ISBNdb (:mod:`backfill.sandbox.works`).

``truth()`` reports, per book: index, kind, title, authors, publisher,
publication_date, ``trap_book``, ``isbn13`` (the one right ISBN: the first print edition, None if
no source knows the book), editions (ISBNdb's title-search records), answers,
rank, ``findable`` (a correct resolver can reach ``isbn13``), ``traps`` (trap
names met on the way), ``sources`` (search APIs listing the book's own
editions), ``decoys`` (the trap records: isbn13, trap, title, authors,
date_published, binding, language) and ``translations`` (ISBNdb records).
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import random
from dataclasses import dataclass
from typing import Any

from backfill.sandbox import codes, traps, variants, words
from backfill.sandbox.book import (
    BAD_CHECKSUM,
    ISBN,
    NO_ISBN,
    SEARCH_SOURCES,
    UNKNOWN,
    WRONG_ISBN,
    Book,
)
from backfill.sandbox.editions import Edition, editions_of

__all__ = [
    "BAD_CHECKSUM",
    "ISBN",
    "NO_ISBN",
    "UNKNOWN",
    "WRONG_ISBN",
    "Book",
    "MonthCatalogue",
    "month_catalogue",
]


@dataclass(frozen=True)
class MonthCatalogue:
    """A month's books plus each generator's answer order."""

    year: int
    month: int
    books: tuple[Book, ...]
    order: dict[str, tuple[int, ...]]  # provider -> book indexes in answer order

    def answer(self, provider: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The provider's list of books (the first ``limit``), in the canonical field names."""
        indexes = self.order[provider][:limit] if limit else self.order[provider]
        return [dict(self.books[i].answers[provider]) for i in indexes]

    def edition(self, index: int, slot: int) -> tuple[Book, Edition] | None:
        """Edition ``slot`` of book ``index``, if ISBNdb knows it."""
        if index >= len(self.books):
            return None
        book = self.books[index]
        isbn = codes.isbn13(codes.book_id(self.year, self.month, index), slot)
        for edition in book.all_records():
            if edition.isbn13 == isbn:
                return book, edition
        return None

    def truth(self) -> dict[str, Any]:
        """Everything a test needs to know what a correct pipeline makes of this month."""
        return {
            "month": f"{self.year:04d}-{self.month:02d}",
            "books": [
                {
                    "index": b.index,
                    "kind": b.kind,
                    "title": b.title,
                    "authors": list(b.authors),
                    "publisher": b.publisher,
                    "publication_date": b.publication_date,
                    "isbn13": b.isbn13,
                    "editions": [b.record(e) for e in b.editions],
                    "answers": {
                        p: (b.answers.get(p) if b.index in order else None)
                        for p, order in self.order.items()
                    },
                    "trap_book": b.trap_book,
                    "findable": b.findable,
                    "traps": b.traps(),
                    "sources": [s for s in SEARCH_SOURCES if s in b.sources],
                    "decoys": b.decoys(),
                    "translations": [b.record(e) for e in b.extra],
                    "rank": {
                        p: (order.index(b.index) if b.index in order else None)
                        for p, order in self.order.items()
                    },
                }
                for b in self.books
            ],
            "answers": {p: self.answer(p) for p in self.order},
        }


@functools.lru_cache(maxsize=1024)
def month_catalogue(year: int, month: int, traps_first: bool = False) -> MonthCatalogue:
    """The catalogue of ``year-month`` (built once, then cached; it never changes).

    The month's trap books (:mod:`backfill.sandbox.traps`) come after every other
    book of Gemini's list and xAI leaves them out, so a short list never meets
    them; ``traps_first`` (config ``trap_placement: "head"``) puts them among both
    lists' first ten instead. The books themselves are the same either way.
    """
    books, gemini_order, xai_order, first_trap = _month_books(year, month)
    trap_indexes = list(range(first_trap, len(books)))
    if not traps_first:
        order = {"gemini": gemini_order + tuple(trap_indexes), "xai": xai_order}
    else:
        gemini, xai = list(gemini_order), list(xai_order)
        for j, i in enumerate(trap_indexes):
            gemini.insert(1 + 2 * j, i)
        for j, i in enumerate(i for i in trap_indexes if "xai" in books[i].answers):
            xai.insert(2 * j, i)
        order = {"gemini": tuple(gemini), "xai": tuple(xai)}
    return MonthCatalogue(year, month, books, order)


@functools.lru_cache(maxsize=512)
def _month_books(
    year: int, month: int
) -> tuple[tuple[Book, ...], tuple[int, ...], tuple[int, ...], int]:
    """The month's books, the generators' orders (trap books excluded from both) and
    the index of the first trap book.

    The draws of the month's random generator are those of the catalogue before
    traps existed, so every earlier book, answer and ISBNdb record is unchanged;
    the trap books come from a generator of their own.
    """
    codes.book_id(year, month, 0)  # raises ValueError outside the universe
    rng = random.Random(f"backfill-sandbox/{year:04d}-{month:02d}")
    n_gemini, n_xai_only = rng.randint(22, 30), rng.randint(3, 5)
    kinds = _gemini_kinds(rng, n_gemini) + [
        rng.choices((ISBN, NO_ISBN, UNKNOWN, BAD_CHECKSUM), (6, 2, 1, 1))[0]
        for _ in range(n_xai_only)
    ]
    books = [_book(rng, year, month, i, kind) for i, kind in enumerate(kinds)]
    gemini_order = tuple(range(n_gemini))
    xai_order = [i for i in gemini_order if rng.random() < 0.7]
    for i in range(n_gemini, n_gemini + n_xai_only):
        xai_order.insert(rng.randint(0, min(len(xai_order), 9)), i)
    for i in gemini_order:
        books[i].answers["gemini"] = _answer(rng, books[i], exact=True)
    for i in xai_order:
        books[i].answers["xai"] = _answer(rng, books[i], exact=False)
    books = [traps.decorate(b) for b in books]
    first_trap = len(books)
    books += traps.trap_books(year, month, first_trap)
    return tuple(books), gemini_order, tuple(xai_order), first_trap


def _gemini_kinds(rng: random.Random, count: int) -> list[str]:
    """The kinds of Gemini's list: every special kind appears within the first 10."""
    special = {UNKNOWN: max(2, round(count * 0.1)), BAD_CHECKSUM: 2, NO_ISBN: max(3, count // 6)}
    pool = [kind for kind, n in special.items() for _ in range(n - 1)]
    pool += [ISBN] * (count - len(pool) - len(special))
    rng.shuffle(pool)
    head = list(special) + pool[:7]
    rng.shuffle(head)
    return head + pool[7:]


def _book(rng: random.Random, year: int, month: int, index: int, kind: str) -> Book:
    ident = codes.book_id(year, month, index)
    adj, noun, place = codes.title_words(ident)
    title = rng.choice(words.TITLE_PATTERNS).format(a=adj, n=noun, p=place)
    authors = tuple(_name(rng) for _ in range(1 if rng.random() < 0.85 else 2))
    publisher = rng.choice(words.PUBLISHERS)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    date = f"{year:04d}-{month:02d}-{day:02d}"
    reasons = words.REASONS_RECENT if year >= 2020 else words.REASONS_CLASSIC
    book = Book(
        year=year,
        month=month,
        index=index,
        kind=kind,
        title=title,
        authors=authors,
        publisher=publisher,
        publication_date=date,
        reason=rng.choice(reasons),
        subject=rng.choice(words.SUBJECTS),
        editions=(),
    )
    editions = () if kind == UNKNOWN else editions_of(rng, book, ident, thorough=kind == NO_ISBN)
    return dataclasses.replace(book, editions=editions)


def _answer(rng: random.Random, book: Book, *, exact: bool) -> dict[str, Any]:
    """One generator's entry for a book; xAI's (``exact=False``) varies the spelling."""
    entry: dict[str, Any] = {
        "title": book.title if exact else variants.title(rng, book.title),
        "authors": list(book.authors) if exact else [variants.author(rng, a) for a in book.authors],
        "publisher": book.publisher,
        "publication_date": book.publication_date,
        "isbn13": variants.stated_isbn(rng, book, codes.book_id(book.year, book.month, book.index)),
        "reason": book.reason,
    }
    if not exact:
        if book.kind == ISBN and rng.random() < 0.15:
            entry["isbn13"] = None  # xAI is less sure of this one: resolved by title
        if rng.random() < 0.15:
            entry["publication_date"] = book.publication_date[:7]
    return entry


def _name(rng: random.Random) -> str:
    return f"{rng.choice(words.FIRST_NAMES)} {rng.choice(words.LAST_NAMES)}"
