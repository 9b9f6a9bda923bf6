"""Validate and merge the generators' lists into one list of distinct books.

* ISBNs are checked with python-stdnum (checksum and 978/979 prefix); ISBN-10s
  become ISBN-13s. A book whose ISBN fails the check keeps it in
  ``invalid_isbn``: unless another entry for the same book brings a valid ISBN
  or none at all, the pipeline counts it as a hallucination and drops it (never
  looked up, never stored).
* Two entries are the same book when their normalised titles and first authors
  are both at least ``threshold`` similar (rapidfuzz, 0..1).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from rapidfuzz import fuzz
from stdnum import isbn as stdisbn
from stdnum.exceptions import ValidationError

from backfill.providers.base import BookCandidate, Generation

_NON_WORD = re.compile(r"[^\w]+")
_BRACKETED = re.compile(r"[(\[][^)\]]*[)\]]")
_SUBTITLE = re.compile(r"\s*(?::|;|\s[-\u2013\u2014]\s)")


@dataclass
class Candidate:
    """One distinct generated book after validation and merging."""

    title: str
    authors: list[str]
    publisher: str | None
    publication_date: str | None
    isbn13: str | None  # valid ISBN-13, or None
    invalid_isbn: str | None  # what a generator claimed when no valid ISBN was given
    reason: str | None
    sources: set[str] = field(default_factory=set)

    @property
    def generator(self) -> str:
        """'gemini', 'xai', or 'both' when the two lists agreed on the book."""
        return "both" if len(self.sources) > 1 else next(iter(sorted(self.sources)), "")

    @property
    def title_key(self) -> str:
        """Normalised ``title|first author``: the title-lookup cache key."""
        author = normalise_name(self.authors[0]) if self.authors else ""
        return f"{normalise(self.title)}|{author}"


def normalise(text: str) -> str:
    """Case, accents and punctuation folded: 'Beloved: A Novel' -> 'beloved a novel'."""
    text = unicodedata.normalize("NFKD", text.casefold().replace("&", " and "))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_NON_WORD.sub(" ", text).replace("_", " ").split())


def normalise_name(name: str) -> str:
    """An author's name folded, 'Morrison, Toni' read as 'Toni Morrison'."""
    if name.count(",") == 1:
        last, first = name.split(",")
        name = f"{first} {last}"
    return normalise(name)


def core_title(title: str) -> str:
    """The title without series notes and subtitle, normalised:
    'Dune (Dune Chronicles, Book 1)' -> 'dune', 'Beloved: A Novel' -> 'beloved'."""
    bare = _BRACKETED.sub(" ", title)
    core = normalise(_SUBTITLE.split(bare, maxsplit=1)[0])
    return core or normalise(title)


def title_similarity(a: str, b: str) -> float:
    """0..1; a subtitle or a series note on one side ('X' vs 'X: A Novel',
    'X (Series, Book 1)') does not lower the score."""
    na, nb = normalise(a), normalise(b)
    if not na or not nb:
        return 0.0
    # token_set_ratio scores a subset as 100: only safe when the shorter title
    # has more than one word ('It' must not match 'It Ends with Us').
    if min(len(na.split()), len(nb.split())) >= 2:
        score = fuzz.token_set_ratio(na, nb) / 100
    else:
        score = fuzz.ratio(na, nb) / 100
    # The main titles alone, compared whole ('It' vs 'It Ends with Us' stays low).
    return max(score, fuzz.ratio(core_title(a), core_title(b)) / 100)


def author_similarity(a: str, b: str) -> float:
    """0..1, independent of name order."""
    return fuzz.token_sort_ratio(normalise_name(a), normalise_name(b)) / 100


def authors_match(wanted: list[str], found: Iterable[str], threshold: float) -> bool:
    """Whether the first wanted author is one of ``found`` (True when nothing is wanted)."""
    if not wanted:
        return True
    return any(author_similarity(wanted[0], other) >= threshold for other in found if other)


def valid_isbn13(raw: str | None) -> str | None:
    """The ISBN-13 for ``raw`` (ISBN-10 converted), or None when it is not a valid ISBN."""
    if not raw:
        return None
    try:
        return str(stdisbn.to_isbn13(stdisbn.validate(raw)))
    except ValidationError:
        return None


def same_book(a: Candidate, b: Candidate, threshold: float) -> bool:
    """Titles and first authors both at least ``threshold`` similar."""
    if title_similarity(a.title, b.title) < threshold:
        return False
    if a.authors and b.authors:
        return author_similarity(a.authors[0], b.authors[0]) >= threshold
    return True


def _candidate(book: BookCandidate) -> Candidate:
    isbn13 = valid_isbn13(book.isbn)
    return Candidate(
        title=book.title,
        authors=list(book.authors),
        publisher=book.publisher,
        publication_date=book.publication_date,
        isbn13=isbn13,
        invalid_isbn=book.isbn if book.isbn and not isbn13 else None,
        reason=book.reason,
        sources={book.source},
    )


def _absorb(kept: Candidate, other: Candidate) -> None:
    """Fill what ``kept`` lacks from ``other`` (the first list wins on conflicts)."""
    kept.sources |= other.sources
    if not kept.isbn13 and other.isbn13:
        kept.isbn13, kept.invalid_isbn = other.isbn13, None
    elif not kept.isbn13 and not other.invalid_isbn:
        kept.invalid_isbn = None  # the other list names it without a made-up ISBN
    kept.authors = kept.authors or other.authors
    kept.publisher = kept.publisher or other.publisher
    kept.publication_date = kept.publication_date or other.publication_date
    kept.reason = kept.reason or other.reason


def merge(generations: Iterable[Generation], threshold: float) -> list[Candidate]:
    """Validate every entry and merge duplicates, within and across lists, in order."""
    merged: list[Candidate] = []
    for generation in generations:
        for book in generation.books:
            candidate = _candidate(book)
            for kept in merged:
                if same_book(kept, candidate, threshold):
                    _absorb(kept, candidate)
                    break
            else:
                merged.append(candidate)
    return merged
