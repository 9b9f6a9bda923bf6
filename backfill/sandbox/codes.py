"""Reversible codes: which month and book a sandbox title or ISBN belongs to.

Every book the sandbox can ever produce has an id, ``(month since 1900) * 40 + index``.
Its title's three content words (adjective, noun, place word) and its ISBNs are
scrambled but reversible encodings of that id, so ``GET /book/{isbn}`` and a title
search can find the month to build without an index of every month, and no two
books in the universe share a title by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum import ean

from backfill.sandbox import words

# The service's year range (backfill.constants.MIN_YEAR/MAX_YEAR), copied on purpose:
# the sandbox plays the outside world and imports nothing of the service.
YEAR_MIN, YEAR_MAX = 1900, 2100
SLOTS_PER_MONTH = 40  # most books a month can hold (generators' lists plus spare)
SLOTS_PER_BOOK = 10  # ISBN slots per book: editions 0..8, 9 = an ISBN nobody knows
UNKNOWN_SLOT = 9
TOTAL_IDS = (YEAR_MAX - YEAR_MIN + 1) * 12 * SLOTS_PER_MONTH

_LA, _LN, _LP = len(words.ADJECTIVES), len(words.NOUNS), len(words.PLACES)
TITLE_SPACE = _LA * _LN * _LP  # must be >= TOTAL_IDS (checked by the tests)
_TITLE_MUL, _TITLE_ADD = 7919, 104_729  # 7919 is prime and shares no factor with the space
_ISBN_SPACE = 10**9
_ISBN_MUL, _ISBN_ADD = 387_420_489, 271_828_182  # 3**18: coprime with 10**9

_ADJ = {w.lower(): i for i, w in enumerate(words.ADJECTIVES)}
_NOUN = {w.lower(): i for i, w in enumerate(words.NOUNS)}
_PLACE = {w.lower(): i for i, w in enumerate(words.PLACES)}
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class BookRef:
    """Where a book lives: its month and its index in that month's catalogue."""

    year: int
    month: int
    index: int


def book_id(year: int, month: int, index: int) -> int:
    """The universe-wide id of book ``index`` of ``year-month``."""
    if not (YEAR_MIN <= year <= YEAR_MAX and 1 <= month <= 12):
        raise ValueError(f"month {year:04d}-{month:02d} is outside {YEAR_MIN}..{YEAR_MAX}")
    if not 0 <= index < SLOTS_PER_MONTH:
        raise ValueError(f"book index {index} out of range")
    return ((year - YEAR_MIN) * 12 + month - 1) * SLOTS_PER_MONTH + index


def ref_of(ident: int) -> BookRef | None:
    """The inverse of :func:`book_id` (None for an id outside the universe)."""
    if not 0 <= ident < TOTAL_IDS:
        return None
    months, index = divmod(ident, SLOTS_PER_MONTH)
    years, month0 = divmod(months, 12)
    return BookRef(YEAR_MIN + years, month0 + 1, index)


def title_words(ident: int) -> tuple[str, str, str]:
    """The (adjective, noun, place word) that spell book ``ident``'s title."""
    code = (_TITLE_MUL * ident + _TITLE_ADD) % TITLE_SPACE
    a, rest = code % _LA, code // _LA
    n, p = rest % _LN, rest // _LN
    return words.ADJECTIVES[a], words.NOUNS[n], words.PLACES[p]


def tokens(text: str) -> list[str]:
    """Lower-case word tokens of a title or query (punctuation and case ignored)."""
    return _TOKEN.findall(text.lower())


def ref_of_title(text: str) -> BookRef | None:
    """The book whose title words appear in ``text``, if exactly one reading exists."""
    found = set(tokens(text))
    adj = [_ADJ[t] for t in found if t in _ADJ]
    noun = [_NOUN[t] for t in found if t in _NOUN]
    place = [_PLACE[t] for t in found if t in _PLACE]
    if len(adj) != 1 or len(noun) != 1 or len(place) != 1:
        return None
    code = adj[0] + noun[0] * _LA + place[0] * _LA * _LN
    ident = (code - _TITLE_ADD) * pow(_TITLE_MUL, -1, TITLE_SPACE) % TITLE_SPACE
    return ref_of(ident)


def isbn13(ident: int, slot: int) -> str:
    """The valid ISBN-13 of edition ``slot`` of book ``ident``."""
    body = (_ISBN_MUL * (ident * SLOTS_PER_BOOK + slot) + _ISBN_ADD) % _ISBN_SPACE
    first12 = f"978{body:09d}"
    return first12 + ean.calc_check_digit(first12)


def ref_of_isbn(value: str) -> tuple[BookRef, int] | None:
    """The book and edition slot an ISBN-13 encodes, or None if it is not a sandbox ISBN."""
    if len(value) != 13 or not value.isdigit() or not value.startswith("978"):
        return None
    if ean.calc_check_digit(value[:12]) != value[12]:
        return None
    body = int(value[3:12])
    code = (body - _ISBN_ADD) * pow(_ISBN_MUL, -1, _ISBN_SPACE) % _ISBN_SPACE
    ident, slot = divmod(code, SLOTS_PER_BOOK)
    ref = ref_of(ident)
    return (ref, slot) if ref else None


def hyphenate(value: str) -> str:
    """An ISBN-13 written with hyphens, the way a person (or a model) might quote it."""
    return f"{value[:3]}-{value[3]}-{value[4:8]}-{value[8:12]}-{value[12]}"
