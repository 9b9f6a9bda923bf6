"""What Open Library and Google Books hold: the catalogue's records, regrouped.

* Open Library groups editions into **works**: the book's own editions (and its
  translation) make one work, each trap record (same title by someone else,
  companion, sibling, older book) a work of its own. A work lists the union of its
  editions' ISBNs, in both forms and in no useful order.
* Google Books lists **volumes**: one per ISBNdb record, with the same ISBNs.

Both split "Title: Subtitle" into ``title`` and ``subtitle``, so a companion
"<title>: A Reader's Companion" shows the book's very title plus a subtitle.

The book's own editions appear only where ``Book.sources`` says; the trap records
appear in every source. Title queries find a book by its code words, as ISBNdb's
search does (:func:`backfill.sandbox.codes.ref_of_title`).
"""

from __future__ import annotations

import calendar
import hashlib
import random
from dataclasses import dataclass

from stdnum import isbn as stdisbn
from stdnum.exceptions import ValidationError

from backfill.sandbox import codes
from backfill.sandbox.book import Book
from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.editions import EDITION, TRANSLATION, Edition, isbn10

OL_LANGUAGES = {"en": "eng", "de": "ger", "fr": "fre", "es": "spa", "it": "ita"}


@dataclass(frozen=True)
class Work:
    """One Open Library work: a key, its title and authors, and its editions."""

    key: str
    title: str
    authors: tuple[str, ...]
    editions: tuple[Edition, ...]

    def isbns(self) -> list[str]:
        """Every edition's ISBN-13 and ISBN-10, shuffled the same way every time."""
        found = [form for e in self.editions for form in (e.isbn13, isbn10(e.isbn13))]
        random.Random(self.key).shuffle(found)
        return found

    def publish_dates(self) -> list[str]:
        """Open Library's free-text dates: "May 12, 2023" or "2023"."""
        dates = [ol_date(e.date_published) for e in self.editions]
        random.Random(self.key + "/dates").shuffle(dates)
        return list(dict.fromkeys(dates))

    @property
    def first_publish_year(self) -> int:
        """The earliest year among its editions."""
        return min(int(e.date_published[:4]) for e in self.editions)


def book_for_title(text: str) -> Book | None:
    """The catalogue book whose code words the title query carries, if any."""
    ref = codes.ref_of_title(text)
    if ref is None:
        return None
    try:
        catalogue = month_catalogue(ref.year, ref.month)
    except ValueError:
        return None
    return catalogue.books[ref.index] if ref.index < len(catalogue.books) else None


def record_for_isbn(value: str) -> tuple[Book, Edition] | None:
    """The record (and the book it is filed under) an ISBN-10/13 names, if any."""
    try:
        isbn13 = str(stdisbn.to_isbn13(stdisbn.validate(value)))
    except ValidationError:
        return None
    found = codes.ref_of_isbn(isbn13)
    if not found:
        return None
    ref, slot = found
    return month_catalogue(ref.year, ref.month).edition(ref.index, slot)


def works_of(book: Book) -> list[Work]:
    """Open Library's works for a title query that found ``book``, in search order."""
    own = "openlibrary" in book.sources
    ident = codes.book_id(book.year, book.month, book.index)
    works: list[Work] = []
    for record in book.searched():
        if record.role == EDITION:
            if own and not any(w.key == _work_key(ident, 0) for w in works):
                mine = tuple(e for e in book.all_records() if e.role in (EDITION, TRANSLATION))
                works.append(Work(_work_key(ident, 0), book.title, book.authors, mine))
        else:
            slot = _slot(record)
            works.append(Work(_work_key(ident, slot), record.title, record.authors, (record,)))
    return works


def work_of_isbn(value: str) -> Work | None:
    """The Open Library work holding the edition with this ISBN, if Open Library has it."""
    hit = record_for_isbn(value)
    if hit is None:
        return None
    book, record = hit
    for work in works_of(book):
        if any(e.isbn13 == record.isbn13 for e in work.editions):
            return work
    return None


def volumes_of(book: Book) -> list[Edition]:
    """Google Books' volumes for a title query that found ``book``, in search order."""
    own = "googlebooks" in book.sources
    return [e for e in book.searched() if e.role != EDITION or own]


def volume_of_isbn(value: str) -> Edition | None:
    """The Google Books volume with this ISBN (translations included), if Google has it."""
    hit = record_for_isbn(value)
    if hit is None:
        return None
    book, record = hit
    if record.role in (EDITION, TRANSLATION) and "googlebooks" not in book.sources:
        return None
    return record


def volume_id(isbn13: str) -> str:
    """A stable 12-character Google Books volume id for an ISBN."""
    digest = hashlib.sha256(f"gb/{isbn13}".encode()).digest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(alphabet[b % 64] for b in digest[:12])


def split_title(title: str) -> tuple[str, str | None]:
    """Google's split of "Title: Subtitle"."""
    main, sep, rest = title.partition(": ")
    return (main, rest) if sep else (title, None)


def ol_date(date: str) -> str:
    """ "2023-05-12" -> "May 12, 2023"; a bare year stays as it is."""
    if len(date) < 10:
        return date[:4]
    year, month, day = int(date[:4]), int(date[5:7]), int(date[8:10])
    return f"{calendar.month_name[month]} {day}, {year}"


def authors_match_loosely(query: str, authors: tuple[str, ...]) -> bool:
    """Whether any word (3+ letters) of an author query is in the authors' names."""
    wanted = [t for t in codes.tokens(query) if len(t) >= 3]
    names = {t for a in authors for t in codes.tokens(a)}
    return not wanted or any(t in names for t in wanted)


def _work_key(ident: int, slot: int) -> str:
    return f"/works/OL{(ident * codes.SLOTS_PER_BOOK + slot) * 7 + 1_000_003}W"


def _slot(record: Edition) -> int:
    found = codes.ref_of_isbn(record.isbn13)
    return found[1] if found else 0
