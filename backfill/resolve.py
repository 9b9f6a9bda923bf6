"""Resolve a month's distinct books to verified ISBN-13s through ISBNdb.

1. Books with a valid ISBN: served from ``books`` or ``lookup_cache`` when known,
   otherwise looked up -- in bulk (``POST /books``, one request per
   ``ISBNDB_BULK_SIZE`` ISBNs) or one by one (``GET /book/{isbn}``). A record
   whose title does not match the generated title is not taken (an LLM can
   produce a valid-checksum ISBN of another book).
2. Books without an ISBN, or whose ISBN did not resolve: title search, served
   from ``lookup_cache`` by (normalised title, first author) when known; the
   chosen edition's authors and publication year must match, and the earliest
   print edition is preferred.

ISBNdb is never asked twice about the same ISBN or the same title key: every
answer, found or not, goes to ``lookup_cache`` (not-found answers expire after
``ISBNDB_NOT_FOUND_TTL_DAYS``), and books found by ISBN are also remembered
under their title key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from backfill.books import Lookup, load_books, load_lookups, remember, upsert_books
from backfill.config import Settings
from backfill.dedupe import Candidate, authors_match, core_title, title_similarity
from backfill.providers.isbndb import IsbndbClient, isbn13_of

PRINT_BINDINGS = ("hardcover", "hardback", "paperback", "mass market", "library binding")
OTHER_BINDINGS = ("kindle", "ebook", "e-book", "digital", "audio", "mp3", "cd")
HEARTBEAT_EVERY = 10  # ISBNdb requests between two heartbeats
_YEAR = re.compile(r"(\d{4})")


@dataclass
class Resolution:
    """The ISBN-13s a month's books resolved to, with the books behind each."""

    books: dict[str, list[Candidate]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.books)


class Resolver:
    """Resolves one month's candidates; counts ISBNdb requests via ``on_calls(n)``."""

    def __init__(
        self,
        session: Session,
        client: IsbndbClient,
        settings: Settings,
        *,
        year: int,
        month: int,
        on_calls: Callable[[int], None],
        on_resolved: Callable[[int], None],
        heartbeat: Callable[[], None],
    ) -> None:
        self.session = session
        self.client = client
        self.settings = settings
        self.year, self.month = year, month
        self.on_calls = on_calls
        self.on_resolved = on_resolved
        self.heartbeat = heartbeat
        self.result = Resolution()

    def run(self, candidates: list[Candidate]) -> Resolution:
        """Resolve every candidate, storing books and lookups as it goes (flushed)."""
        unresolved = self._by_isbn([c for c in candidates if c.isbn13])
        self.heartbeat()
        self._by_title(unresolved + [c for c in candidates if not c.isbn13])
        self.heartbeat()
        return self.result

    # -- ISBN phase
    def _by_isbn(self, candidates: list[Candidate]) -> list[Candidate]:
        """Resolve by ISBN; returns the candidates left for title search.

        Each request's answers are stored before the next request is sent, so
        an error half-way loses none of them (the caller commits on failure).
        """
        isbns = {c.isbn13 for c in candidates if c.isbn13}
        stored = load_books(self.session, isbns)
        known = load_lookups(self.session, "isbn", isbns, self.settings.not_found_ttl_days)
        left: list[Candidate] = []
        pending: dict[str, list[Candidate]] = {}
        for candidate in candidates:
            isbn = candidate.isbn13
            assert isbn is not None
            if isbn in stored:
                if title_similarity(candidate.title, stored[isbn].title) >= (
                    self.settings.dedupe_threshold
                ):
                    self._resolved(candidate, isbn, None, "")
                else:
                    left.append(candidate)
            elif isbn in known:
                # Known but not stored: not found, or a record of another book.
                left.append(candidate)
            else:
                pending.setdefault(isbn, []).append(candidate)

        for asked, found, resolver in self._fetch(sorted(pending)):
            remember(self.session, [Lookup("isbn", i, i if i in found else None) for i in asked])
            for isbn in asked:
                for candidate in pending[isbn]:
                    record = found.get(isbn)
                    if record is not None and _title_matches(candidate, record, self.settings):
                        self._resolved(candidate, isbn, record, resolver)
                    else:
                        left.append(candidate)
        return left

    def _fetch(
        self, isbns: list[str]
    ) -> Iterator[tuple[list[str], dict[str, dict[str, Any]], str]]:
        """One ``(ISBNs asked, records found, resolver)`` per request sent."""
        bulk = self.settings.isbndb_bulk_enabled
        size = self.settings.isbndb_bulk_size if bulk else 1
        for count, start in enumerate(range(0, len(isbns), size), 1):
            asked = isbns[start : start + size]
            before = self.client.calls
            try:
                if bulk:
                    found = self.client.books_bulk(asked)
                else:
                    book = self.client.book(asked[0])
                    found = {asked[0]: book} if book is not None else {}
            finally:
                self.on_calls(self.client.calls - before)
            yield asked, found, "isbndb:bulk" if bulk else "isbndb:book"
            if count % HEARTBEAT_EVERY == 0:
                self.heartbeat()

    # -- title phase
    def _by_title(self, candidates: list[Candidate]) -> None:
        keys = {c.title_key for c in candidates}
        known = load_lookups(self.session, "title", keys, self.settings.not_found_ttl_days)
        stored = load_books(self.session, [k.isbn13 for k in known.values() if k.isbn13])
        searched: dict[str, str | None] = {}
        for count, candidate in enumerate(candidates, 1):
            key = candidate.title_key
            if key in known:
                isbn = known[key].isbn13
                if isbn and (isbn in stored or isbn in self.result.books):
                    self._resolved(candidate, isbn, None, "")
                continue
            if key not in searched:
                searched[key] = self._search(candidate)  # stores the edition it finds
            elif (isbn := searched[key]) is not None:
                self._resolved(candidate, isbn, None, "")
            if count % HEARTBEAT_EVERY == 0:
                self.heartbeat()

    def _search(self, candidate: Candidate) -> str | None:
        """One title search; stores the chosen edition and remembers the answer."""
        before = self.client.calls
        try:
            editions = self.client.search_title(candidate.title)
        finally:
            self.on_calls(self.client.calls - before)
        record = choose_edition(candidate, editions, self.year, self.settings)
        isbn = isbn13_of(record) if record else None
        remember(self.session, [Lookup("title", candidate.title_key, isbn)])
        if record and isbn:
            self._resolved(candidate, isbn, record, "isbndb:title")
        return isbn

    # -- storage
    def _resolved(
        self, candidate: Candidate, isbn: str, record: dict[str, Any] | None, resolver: str
    ) -> None:
        """Count the book; store it when ``record`` is a fresh ISBNdb answer."""
        group = self.result.books.setdefault(isbn, [])
        if candidate not in group:
            group.append(candidate)
        if record is not None:
            upsert_books(self.session, [self._row(isbn, group, record, resolver)])
            # Found by ISBN: a later ISBN-less mention of the book needs no search.
            remember(self.session, [Lookup("title", c.title_key, isbn) for c in group])
        self.on_resolved(self.result.count)

    def _row(
        self, isbn: str, group: list[Candidate], record: dict[str, Any], resolver: str
    ) -> dict[str, Any]:
        first = group[0]
        sources = set().union(*(c.sources for c in group))
        authors = [str(a) for a in record.get("authors") or [] if a] or first.authors
        return {
            "isbn13": isbn,
            "title": str(record.get("title") or first.title),
            "authors": authors,
            "publisher": record.get("publisher") or first.publisher,
            "publication_date": _text(record.get("date_published")) or first.publication_date,
            "found_year": self.year,
            "found_month": self.month,
            "generator": "both" if len(sources) > 1 else next(iter(sources)),
            "resolver": resolver,
            "payload": {
                "isbndb": record,
                "generated": [
                    {
                        "title": c.title,
                        "authors": c.authors,
                        "publication_date": c.publication_date,
                        "reason": c.reason,
                        "sources": sorted(c.sources),
                    }
                    for c in group
                ],
            },
        }


def _text(value: Any) -> str | None:
    return str(value)[:32] if value else None


def _year(value: Any) -> int | None:
    match = _YEAR.search(str(value or ""))
    return int(match.group(1)) if match else None


def _title_matches(candidate: Candidate, record: dict[str, Any], settings: Settings) -> bool:
    titles = [record.get("title"), record.get("title_long")]
    return any(
        title_similarity(candidate.title, str(t)) >= settings.dedupe_threshold for t in titles if t
    )


def _main_title(title: str) -> str:
    """The title without its subtitle, normalised: 'Beloved: A Novel' -> 'beloved'."""
    return core_title(title)


def _binding_rank(record: dict[str, Any]) -> int:
    """0 print, 1 unknown, 2 ebook/audio."""
    binding = str(record.get("binding") or record.get("format") or "").lower()
    if any(word in binding for word in PRINT_BINDINGS):
        return 0
    if any(word in binding for word in OTHER_BINDINGS):
        return 2
    return 1


def choose_edition(
    candidate: Candidate, editions: list[dict[str, Any]], year: int, settings: Settings
) -> dict[str, Any] | None:
    """The edition to keep: title and first author match, publication year matches
    (the book's own year, else the month's; one year apart is tolerated but ranks
    last); then the exact title before a near one, print before ebook/audio, and
    the earliest date."""
    target = _year(candidate.publication_date) or year
    ranked: list[tuple[tuple[int, int, int, str, str], dict[str, Any]]] = []
    for record in editions:
        isbn = isbn13_of(record)
        found_year = _year(record.get("date_published"))
        if not isbn or found_year is None or abs(found_year - target) > 1:
            continue
        if not _title_matches(candidate, record, settings):
            continue
        if not authors_match(
            candidate.authors, record.get("authors") or [], settings.dedupe_threshold
        ):
            continue
        exact = _main_title(str(record.get("title") or "")) == _main_title(candidate.title)
        date = str(record.get("date_published"))
        rank = (int(found_year != target), int(not exact), _binding_rank(record), date, isbn)
        ranked.append((rank, record))
    return min(ranked, key=lambda item: item[0])[1] if ranked else None
