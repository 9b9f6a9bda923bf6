"""Catalogue traps: records a careless resolver takes for the book, and books built
around them.

Each month gets 3-5 *trap books* (indexes after the month's other books, drawn
from a generator seeded by ``backfill-sandbox-traps/YYYY-MM``, so the older books
never change). Each has one primary trap, spread so that every twelve months
meet each several times, plus secondary ones:

* ``same_title_other_author`` (slot 3): the same title by another author, in the
  same year or years earlier.
* ``companion`` (slot 5): "<title>: A Reader's Companion" / "<title>: A Study
  Guide" / "Summary of <title>" / "Workbook for <title>" by the same author, a
  print binding, the same day; often listed *before* the book.
* ``series_sibling`` (slot 6): the generators quote the ISBN of a sibling by the
  same author a year or two apart ("<title> Returns", or one title word swapped).
* ``other_book_isbn`` (slot 7): the generators quote the ISBN of an older book by
  someone else whose title extends this one ("The Road" -> "The Road to Wigan Pier").
* ``translation`` (slot 8): a translated edition (another title, ``language`` not
  "en"), in Open Library's work ISBN list and in ISBNdb by ISBN.
* ``earlier_ebook`` (slot 1): an ebook/audio edition out days before the print one.
* A fifth trap book, some months, is known to no source at all: only its decoys
  exist (kind ``unknown``, ``findable`` false).

Each search API lists the decoys; the book's own editions are in ISBNdb always,
and in Open Library and Google Books only sometimes (``Book.sources``), so a
chain reaches all three. The month's other books get translations and partial
Open Library/Google Books coverage too, by a hash of their id (no random draws).
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import random
from typing import Any

from backfill.sandbox import codes, variants, words
from backfill.sandbox.book import NO_ISBN, UNKNOWN, WRONG_ISBN, Book
from backfill.sandbox.editions import (
    COMPANION,
    OTHER_BOOK,
    SAME_TITLE,
    SIBLING,
    TRANSLATION,
    Edition,
)

DECOYS_ONLY = "decoys_only"
PRIMARY = (COMPANION, SAME_TITLE, SIBLING, OTHER_BOOK)
COMPANION_FORMS = (
    "{t}: A Reader's Companion",
    "{t}: A Study Guide",
    "Summary of {t}",
    "Workbook for {t}",
)
SEQUEL_FORMS = ("{t} Returns", "Return to {t}")
# Title words of siblings and extensions: outside the code word lists, so the
# variant still decodes to the same book (or, swapped in, to none).
SWAP_WORDS = ("Mist", "Fury", "Ruin", "Shadow", "Dawn", "Flame")
EXTENSIONS = ("{t} at Dusk", "{t} and Other Stories", "{t} Revisited", "{t} by Night")
LANGUAGES = {
    "de": "Das {n} der {a} {p}",
    "fr": "Le {n} des {p} {a}",
    "es": "El {n} de los {p} {a}",
    "it": "Il {n} dei {p} {a}",
}
EBOOK_BINDINGS = ("Kindle Edition", "Audible Audiobook", "Audio CD")
_PLAIN_PATTERNS = tuple(p for p in words.TITLE_PATTERNS if ":" not in p and "," not in p)

TRAP_OPENLIBRARY_COVERAGE = 0.8
TRAP_GOOGLEBOOKS_COVERAGE = 0.85


def decorate(book: Book) -> Book:
    """A pre-trap book with a translation and partial Open Library/Google Books
    coverage, decided by a hash of its id (no draws: its other data stay the same)."""
    ident = codes.book_id(book.year, book.month, book.index)
    roll = _hash(ident)
    if book.isbn13 is None:
        return dataclasses.replace(book, sources=frozenset())
    sources = {"isbndb"}
    if roll % 100 < 80:
        sources.add("openlibrary")
    if roll // 100 % 100 < 85:
        sources.add("googlebooks")
    extra: tuple[Edition, ...] = ()
    if roll // 10_000 % 100 < 30:
        lang = sorted(LANGUAGES)[roll // 1_000_000 % len(LANGUAGES)]
        extra = (_translation(book, ident, lang, f"{min(book.year + 1, codes.YEAR_MAX)}"),)
    return dataclasses.replace(book, sources=frozenset(sources), extra=extra)


def trap_books(year: int, month: int, first: int) -> list[Book]:
    """The month's trap books, indexes ``first`` onwards."""
    rng = random.Random(f"backfill-sandbox-traps/{year:04d}-{month:02d}")
    count = min(rng.randint(3, 5), codes.SLOTS_PER_MONTH - first)
    plan = list(PRIMARY)
    rng.shuffle(plan)
    plan = plan[:count] if count <= len(plan) else [*plan, DECOYS_ONLY]
    return [_trap_book(rng, year, month, first + j, primary) for j, primary in enumerate(plan)]


def _trap_book(rng: random.Random, year: int, month: int, index: int, primary: str) -> Book:
    ident = codes.book_id(year, month, index)
    adj, noun, place = codes.title_words(ident)
    title = rng.choice(_PLAIN_PATTERNS).format(a=adj, n=noun, p=place)
    authors = (_name(rng),)
    publisher = rng.choice(words.PUBLISHERS)
    day = rng.randint(8, calendar.monthrange(year, month)[1])
    date = f"{year:04d}-{month:02d}-{day:02d}"
    pages = rng.randint(180, 640)
    book = Book(
        year=year,
        month=month,
        index=index,
        kind={SIBLING: WRONG_ISBN, OTHER_BOOK: WRONG_ISBN, DECOYS_ONLY: UNKNOWN}.get(
            primary, NO_ISBN
        ),
        title=title,
        authors=authors,
        publisher=publisher,
        publication_date=date,
        reason=rng.choice(words.REASONS_RECENT if year >= 2020 else words.REASONS_CLASSIC),
        subject=rng.choice(words.SUBJECTS),
        editions=(),
    )

    def record(slot: int, **kw: Any) -> Edition:
        base: dict[str, Any] = {
            "title": title,
            "authors": authors,
            "publisher": publisher,
            "date_published": date,
            "binding": "Hardcover",
            "edition": "1st",
            "pages": pages,
        }
        return Edition(isbn13=codes.isbn13(ident, slot), **{**base, **kw})

    own = [
        record(0, binding=rng.choice(("Hardcover", "Paperback"))),
        record(
            1,
            binding=rng.choice(EBOOK_BINDINGS),
            date_published=date[:8] + f"{day - rng.randint(1, 7):02d}",
        ),
        record(
            2,
            binding="Paperback",
            edition="Reprint",
            date_published=str(min(year + rng.randint(1, 3), codes.YEAR_MAX)),
        ),
    ]
    wanted = {COMPANION, SAME_TITLE} if primary == DECOYS_ONLY else {primary}
    if rng.random() < 0.35:
        wanted.add(COMPANION)
    if rng.random() < 0.4:
        wanted.add(SAME_TITLE)
    decoys: list[Edition] = []
    if SAME_TITLE in wanted:
        same_year = rng.random() < 0.55
        when = (
            date[:5] + f"{rng.randint(1, 12):02d}-01"
            if same_year
            else _years_before(rng, year, 3, 30)
        )
        decoys.append(
            record(
                3,
                role=SAME_TITLE,
                authors=(_other_name(rng, authors),),
                publisher=rng.choice(words.PUBLISHERS),
                date_published=when,
            )
        )
    if COMPANION in wanted:
        form = rng.choice(COMPANION_FORMS)
        decoys.append(
            record(
                5,
                role=COMPANION,
                title=form.format(t=title),
                binding="Paperback",
                pages=rng.randint(60, 160),
            )
        )
    if primary == SIBLING:
        decoys.append(
            record(
                6,
                role=SIBLING,
                title=_sibling_title(rng, title, place),
                date_published=_sibling_date(rng, year, month),
            )
        )
    if primary == OTHER_BOOK:
        decoys.append(
            record(
                7,
                role=OTHER_BOOK,
                title=rng.choice(EXTENSIONS).format(t=title),
                authors=(_other_name(rng, authors),),
                publisher=rng.choice(words.PUBLISHERS),
                date_published=_years_before(rng, year, 5, 40),
            )
        )
    if primary == DECOYS_ONLY:
        own = []
    extra: tuple[Edition, ...] = ()
    if own and rng.random() < 0.6:
        # Out the same year, sometimes before the English print edition.
        when = (
            date[:8] + f"{rng.randint(1, day - 1):02d}"
            if rng.random() < 0.5
            else str(min(year + 1, codes.YEAR_MAX))
        )
        extra = (_translation(book, ident, rng.choice(sorted(LANGUAGES)), when, pages=pages),)
    order = [*own, *decoys]
    for role, chance in ((COMPANION, 0.5), (SAME_TITLE, 0.3)):
        hit = next((e for e in order if e.role == role), None)
        if hit is not None and rng.random() < chance:  # listed before the book itself
            order.remove(hit)
            order.insert(0, hit)
    # The same coverage as every other book (decorate): Open Library 80%, Google
    # Books 85%, so about 3% are known to ISBNdb alone. (At 50% / 60% a fifth of
    # the trap books were ISBNdb-only; see bench/README.md for both figures.)
    sources = {"isbndb", "openlibrary", "googlebooks"} if own else set()
    if own and rng.random() >= TRAP_OPENLIBRARY_COVERAGE:
        sources.discard("openlibrary")
    if own and rng.random() >= TRAP_GOOGLEBOOKS_COVERAGE:
        sources.discard("googlebooks")
    book = dataclasses.replace(
        book,
        editions=tuple(own + decoys),
        extra=extra,
        search_order=tuple(e.isbn13 for e in order),
        sources=frozenset(sources),
        quoted_trap=primary if primary in (SIBLING, OTHER_BOOK) else None,
        trap_book=True,
    )
    quoted = {
        SIBLING: codes.isbn13(ident, 6),
        OTHER_BOOK: codes.isbn13(ident, 7),
        DECOYS_ONLY: codes.isbn13(ident, codes.UNKNOWN_SLOT),
    }.get(primary)
    book.answers["gemini"] = _answer(rng, book, quoted, exact=True)
    if rng.random() < 0.5:
        book.answers["xai"] = _answer(rng, book, quoted, exact=False)
    return book


def _answer(rng: random.Random, book: Book, isbn: str | None, *, exact: bool) -> dict[str, Any]:
    """A generator's entry for a trap book: it quotes ``isbn`` (the trap's, or none)."""
    return {
        "title": book.title if exact else variants.title(rng, book.title),
        "authors": list(book.authors) if exact else [variants.author(rng, a) for a in book.authors],
        "publisher": book.publisher,
        "publication_date": book.publication_date,
        "isbn13": isbn,
        "reason": book.reason,
    }


def _translation(book: Book, ident: int, lang: str, when: str, pages: int = 320) -> Edition:
    adj, noun, place = codes.title_words(ident)
    return Edition(
        isbn13=codes.isbn13(ident, 8),
        title=LANGUAGES[lang].format(a=adj, n=noun, p=place),
        authors=book.authors,
        publisher=book.publisher,
        date_published=when,
        binding="Paperback",
        edition="1st",
        pages=pages,
        role=TRANSLATION,
        language=lang,
    )


def _sibling_title(rng: random.Random, title: str, place: str) -> str:
    if rng.random() < 0.5:
        return rng.choice(SEQUEL_FORMS).format(t=title)
    return title.replace(place, rng.choice(SWAP_WORDS))  # "Court of Mist and Fury"


def _sibling_date(rng: random.Random, year: int, month: int) -> str:
    sibling = min(max(year + rng.choice((-2, -1, 1)), codes.YEAR_MIN), codes.YEAR_MAX)
    return f"{sibling:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _years_before(rng: random.Random, year: int, low: int, high: int) -> str:
    earlier = max(codes.YEAR_MIN, year - rng.randint(low, high))
    return f"{earlier:04d}-{rng.randint(1, 12):02d}-01"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(words.FIRST_NAMES)} {rng.choice(words.LAST_NAMES)}"


def _other_name(rng: random.Random, taken: tuple[str, ...]) -> str:
    """Another author: neither first nor last name shared with ``taken``."""
    used = {part for name in taken for part in name.split()}
    while True:
        name = _name(rng)
        if not used & set(name.split()):
            return name


def _hash(ident: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"traps/{ident}".encode(), digest_size=8).digest())
