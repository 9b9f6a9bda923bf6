"""Is this hit the candidate's book? Pure rules, no I/O (see ../shared/resolution-anchors.md).

A hit -- an ISBNdb record, a Google Books volume, an Open Library work -- is
accepted for a candidate only when all of these hold:

* it is not a derivative volume the candidate is not (companion, reader's or
  study guide, summary, workbook, analysis, journal, boxed set ...);
* its full title matches one of the candidate's namings (equal main titles; an
  added subtitle or series note only ranks lower, a prefix or word subset is
  another book: "The Road" is not "The Road to Wigan Pier");
* the candidate's first author is one of its authors (a candidate without an
  author is never resolved);
* its year is known and within one year of the candidate's year or the month's.

Among accepted hits: the exact title first, then print before ebook or audio,
then the earliest date in the book's year.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from backfill import match
from backfill.providers.base import Hit

EBOOK_OR_AUDIO = ("ebook", "e-book", "kindle", "digital", "audio", "mp3", "cd", "epub", "pdf")
PRINT = ("hardcover", "hardback", "paperback", "mass market", "library binding", "book", "print")


@dataclass(frozen=True)
class Wanted:
    """What a candidate says of itself: every naming, its year, and the month processed."""

    namings: tuple[tuple[str, tuple[str, ...]], ...]  # (title, authors), the candidate's first
    year: int | None
    month_year: int
    month: int

    @property
    def title(self) -> str:
        return self.namings[0][0]

    @property
    def first_authors(self) -> list[str]:
        """Each naming's first author (how the generators spelled the same person)."""
        return list(dict.fromkeys(a[0] for _, a in self.namings if a))

    @property
    def book_year(self) -> int:
        return self.year or self.month_year


def wanted(
    namings: Iterable[tuple[str, Sequence[str]]], date: str | None, year: int, month: int
) -> Wanted:
    """Build a :class:`Wanted` from a candidate's namings and its stated date."""
    unique = tuple(dict.fromkeys((t, tuple(a)) for t, a in namings if t))
    return Wanted(unique, match.year_of(date), year, month)


@dataclass(frozen=True)
class Verdict:
    """Whether a hit is the book; ``why`` says what failed (or what matched)."""

    accepted: bool
    why: str
    rank: tuple[int, int, int, str, str] = (9, 9, 9, "", "")


def binding_rank(hit: Hit) -> int:
    """0 print, 1 unknown, 2 ebook or audio."""
    binding = (hit.binding or "").lower()
    if any(word in binding for word in EBOOK_OR_AUDIO):
        return 2
    if any(word in binding for word in PRINT):
        return 0
    return 1


def judge(want: Wanted, hit: Hit) -> Verdict:
    """Accept ``hit`` for ``want`` only on full title, first author and year."""
    titles = [t for t, _ in want.namings]
    for title in titles[:1]:
        marker = match.derivative_marker(hit.title, title)
        if marker:
            return Verdict(False, f"a derivative volume ({marker}): {hit.title!r}")
    matched = [t for t in titles if match.title_matches(t, hit.title)]
    if not matched:
        return Verdict(False, f"another title: {hit.title!r}")
    # The author is half of the proof: without one on either side, a same-titled
    # book of the same year would pass (anchors: BookWyrm #2747, #3812).
    if not want.first_authors:
        return Verdict(False, "the generators named no author to check against")
    if not hit.authors:
        return Verdict(False, "no author to check")
    if not any(match.author_matches([a], hit.authors) for a in want.first_authors):
        return Verdict(False, f"another author: {', '.join(hit.authors[:3])}")
    found_year = match.year_of(hit.date)
    if not match.year_matches(found_year, want.year, want.month_year):
        return Verdict(False, f"another year: {hit.date or 'unknown'}")
    rank = (
        min(match.title_rank(t, hit.title) for t in matched),
        binding_rank(hit),
        int(found_year != want.book_year),
        str(hit.date or "9999"),
        hit.isbns[0] if hit.isbns else "",
    )
    return Verdict(True, "title, author and year match", rank)


def ranked(want: Wanted, hits: Iterable[Hit]) -> tuple[list[Hit], list[dict[str, str]]]:
    """The accepted hits, best first, and why each rejected hit was rejected."""
    accepted: list[tuple[tuple[int, int, int, str, str], Hit]] = []
    rejected: list[dict[str, str]] = []
    for hit in hits:
        verdict = judge(want, hit)
        if verdict.accepted:
            accepted.append((verdict.rank, hit))
        else:
            rejected.append(
                {
                    "source": hit.source,
                    "key": str(hit.key or (hit.isbns[0] if hit.isbns else "")),
                    "title": hit.title[:200],
                    "why": verdict.why[:300],
                }
            )
    accepted.sort(key=lambda item: item[0])
    return [hit for _, hit in accepted], rejected


def choose(want: Wanted, hits: Iterable[Hit]) -> tuple[Hit | None, list[dict[str, str]]]:
    """The best accepted hit (or None) and why each rejected hit was rejected."""
    accepted, rejected = ranked(want, hits)
    return (accepted[0] if accepted else None), rejected


def other_month(hit: Hit, year: int, month: int) -> str | None:
    """'YYYY-MM' when the hit's own date puts the book in another month, else None
    (a date without a month files the book under the month being processed)."""
    found = match.month_of(hit.date)
    if found is None or found == (year, month):
        return None
    return f"{found[0]:04d}-{found[1]:02d}"
