"""Resolve a month's pending candidates to the right ISBN-13, or to none.

The chain, cheapest in ISBNdb requests first (ISBNdb is the scarce, paid quota):

1. A verified title -> ISBN mapping already cached, or a book already stored
   under it: no request at all.
2. **Claimed ISBNs** of both generators, and the ISBNs that a title search of the
   keyless sources (``RESOLVERS`` order: Open Library, then Google Books) found,
   are checked together in as few ISBNdb bulk ``POST /books`` requests as
   possible; a record is taken only when :func:`backfill.judge.judge` accepts it
   (full title, first author, year). A claimed ISBN of another book is recorded
   as such, and the book is searched by title.
3. A Google Books volume that itself matches title, author and year is taken
   without ISBNdb when ``VERIFY_WITH_ISBNDB=when-needed``.
4. **ISBNdb title search** is the last resort: only for a book the other sources
   could not answer for (error, quota) or found without a verified edition.

Every answer is kept as it arrives (``checkpoint`` commits): ISBNdb's records
in ``lookup_cache``, the candidate's fate and evidence on its row. Only verified
title mappings are cached as found; a chain that ran to its end without a match
is cached as not found (it expires). A book whose record dates it to another
month is left for that month. When ISBNdb's quota is spent, the books that
still need it stay ``pending`` and :class:`QuotaExhausted` is raised at the end.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from backfill import judge, match
from backfill.books import Lookup, insert_books, load_books, load_lookups, remember
from backfill.candidates import bounded
from backfill.config import Settings
from backfill.db import db_now
from backfill.dedupe import claimed_isbns, namings
from backfill.exceptions import ProviderError, QuotaExhausted
from backfill.models import Candidate
from backfill.providers.base import Hit
from backfill.providers.googlebooks import GoogleBooksClient
from backfill.providers.isbndb import IsbndbClient, hit_of
from backfill.providers.openlibrary import OpenLibraryClient

log = logging.getLogger(__name__)
DOWN_AFTER = 2  # requests in a row that exhausted their tries: the source is down for this run
ISBNS_PER_WORK = 15  # an Open Library work lists every edition; the first ones suffice
KEEP_REJECTED = 10  # rejected hits kept as evidence per candidate


@dataclass
class Clients:
    """The resolution sources of one attempt (closed by the caller)."""

    isbndb: IsbndbClient
    openlibrary: OpenLibraryClient
    googlebooks: GoogleBooksClient

    @classmethod
    def open(cls, settings: Settings) -> Clients:
        """A fresh client of each source (each with its own HTTP connection pool)."""
        return cls(IsbndbClient(settings), OpenLibraryClient(settings), GoogleBooksClient(settings))

    def close(self) -> None:
        for client in (self.isbndb, self.openlibrary, self.googlebooks):
            client.close()


def title_key(title: str, authors: list[str]) -> str:
    """Cache key of a title search: normalised full title | first author's surname."""
    return f"{match.normalise(title)}|{match.surname(authors[0]) if authors else ''}"


@dataclass
class Case:
    """One candidate on its way through the chain."""

    row: Candidate
    want: judge.Wanted
    key: str
    pool: dict[str, str] = field(default_factory=dict)  # ISBN-13 -> who proposed it
    checked: set[str] = field(default_factory=set)
    rejected: list[dict[str, str]] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    missed: set[str] = field(default_factory=set)  # sources that answered: no such book
    incomplete: bool = False  # a source could not answer (error or quota)
    seen_work: bool = False  # a source knows the book but no edition was verified
    skip_search: bool = False  # the whole chain found nothing lately (cached)
    claims_unknown: bool = False  # ISBNs were claimed, and ISBNdb knows none of them
    done: bool = False


class Resolver:
    """Resolves one month's pending candidates; every answer is kept as it arrives."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        clients: Clients,
        *,
        year: int,
        month: int,
        checkpoint: Callable[[], None],
        renew_lease: Callable[[], None],
        reresolving: bool = False,
    ) -> None:
        self.session, self.settings, self.clients = session, settings, clients
        self.year, self.month = year, month
        self.checkpoint, self.renew_lease = checkpoint, renew_lease
        self.reresolving = reresolving
        self.records: dict[str, dict[str, Any] | None] = {}  # ISBN-13 -> ISBNdb record
        self.isbndb_out: QuotaExhausted | None = None
        self.out: set[str] = set()  # title sources spent for the day or down for this run
        self.failures: dict[str, int] = {}  # requests in a row that failed, per source

    # -- the chain
    def run(self, rows: list[Candidate]) -> None:
        """Resolve ``rows`` (pending or unresolved candidates of this month)."""
        now = db_now(self.session)
        cases = [self._case(row, now) for row in rows]
        self._from_cache(cases)
        for case in cases:
            if not case.done:
                case.pool = dict.fromkeys(claimed_isbns(case.row), "isbndb")
        # Round 1: books without a claim are searched while the claims wait, so
        # both go to ISBNdb in the same bulk requests.
        self._title_round([c for c in cases if not c.done and not c.pool], cases)
        # Round 2: the claims that were another book (or none) go by title.
        self._title_round(
            [c for c in cases if not c.done and not c.searched and not c.incomplete], cases
        )
        self._finish(cases)
        self.checkpoint()
        if self.isbndb_out and any(c.row.status == "pending" for c in cases):
            raise self.isbndb_out

    def _case(self, row: Candidate, now: dt.datetime) -> Case:
        row.tries = (row.tries or 0) + 1
        row.last_tried_at = now
        row.status = "pending"
        want = judge.wanted(namings(row), row.publication_date, self.year, self.month)
        return Case(row, want, title_key(row.title, list(row.authors or [])))

    def _title_round(self, todo: list[Case], everyone: list[Case]) -> None:
        """Search ``todo`` through the sources in ``RESOLVERS`` order. What the keyless
        sources found is verified in one go, just before ISBNdb is asked to search:
        one bulk request for the whole round, and no title search that a found
        ISBN already settles."""
        for source in self.settings.resolvers:
            if source == "isbndb":
                self._verify(everyone)
            batch = [
                c for c in todo if not c.done and not c.skip_search and self._should(c, source)
            ]
            for case in batch:
                if source in self.out:  # went down (or spent) during this batch
                    case.incomplete = True
                    continue
                case.searched.append(source)
                self._search(case, source)
                self.renew_lease()
        self._verify(everyone)

    def _should(self, case: Case, source: str) -> bool:
        if source in case.searched:
            return False
        if source in self.out:
            case.incomplete = True  # the chain could not run whole: not a "not found"
            return False
        if source != "isbndb":
            return True
        if self.isbndb_out:
            case.incomplete = True  # waits for the reset as pending, not "not found"
            return False
        # ISBNdb's title search is the last resort, paid per book. It is skipped
        # only for a book that looks made up: every ISBN claimed for it is unknown
        # to ISBNdb, and every other source answered that there is no such book.
        asked = [s for s in case.searched if s != "isbndb"]
        made_up = case.claims_unknown and len(case.missed) == len(asked) > 0
        return case.incomplete or case.seen_work or not made_up

    def _search(self, case: Case, source: str) -> None:
        title, authors = case.want.title, case.row.authors or []
        author = authors[0] if authors else None
        try:
            if source == "openlibrary":
                hits = self.clients.openlibrary.search(title, author)
            elif source == "googlebooks":
                hits = self.clients.googlebooks.search(title, author)
            else:
                hits = self._isbndb_search(title)
        except QuotaExhausted as exc:
            if source == "isbndb":
                self.isbndb_out = exc
            self.out.add(source)  # spent until the reset: no further request today
            case.incomplete = True
            log.warning("%s: %s", source, exc)
            return
        except ProviderError as exc:
            if source == "isbndb":
                raise  # ISBNdb stays down: the attempt fails, the answers so far are kept
            case.incomplete = True
            self.failures[source] = self.failures.get(source, 0) + 1
            if self.failures[source] >= DOWN_AFTER:
                # Each failure already spent every in-attempt try: stop paying for more.
                self.out.add(source)
            log.warning("%s could not answer for %r: %s", source, title, exc)
            return
        self.failures[source] = 0
        self._judge_search(case, source, hits)

    def _judge_search(self, case: Case, source: str, hits: list[Hit]) -> None:
        accepted, rejected = judge.ranked(case.want, hits)
        case.rejected.extend(rejected)
        if not accepted:
            case.missed.add(source)
            return
        case.seen_work = True
        editions = [h for h in accepted if h.edition_level]  # still best first
        direct = source == "isbndb" or self.settings.verify_with_isbndb == "when-needed"
        if editions and direct:
            best = editions[0]
            # Taken without ISBNdb only as a print edition; an ebook-only answer is
            # verified with the other found ISBNs, where a print edition may be.
            if source == "isbndb" or judge.binding_rank(best) == 0:
                self._resolved(case, best, "isbndb:title" if source == "isbndb" else source)
                return
        for hit in accepted:
            for isbn in hit.isbns[:ISBNS_PER_WORK]:
                case.pool.setdefault(isbn, source)

    def _isbndb_search(self, title: str) -> list[Hit]:
        records = self.clients.isbndb.search_title(title)
        hits = [hit_of(r) for r in records]
        # Every record a search returns is knowledge for later claims: keep it.
        known = {h.isbns[0]: r for h, r in zip(hits, records, strict=True) if h.isbns}
        self.records.update(known)
        remember(self.session, [Lookup("isbn", i, i, _slim(r)) for i, r in known.items()])
        self.checkpoint()
        return hits

    # -- ISBNdb verification, batched
    def _verify(self, cases: list[Case]) -> None:
        open_cases = [c for c in cases if not c.done and set(c.pool) - c.checked]
        if not open_cases:
            return
        wanted = {i for c in open_cases for i in c.pool if i not in c.checked}
        self._load_known(wanted)
        for asked, found in self._fetch(sorted(wanted - set(self.records))):
            self.records.update({i: found.get(i) for i in asked})
            remember(
                self.session,
                [Lookup("isbn", i, i if i in found else None, _slim(found.get(i))) for i in asked],
            )
            self.checkpoint()
            self.renew_lease()
        for case in open_cases:
            ready = [i for i in case.pool if i not in case.checked and i in self.records]
            if len(ready) < len(set(case.pool) - case.checked):
                case.incomplete = True  # ISBNdb's quota ran out before these were asked
            case.checked.update(ready)
            claimed = [i for i in case.pool if case.pool[i] == "isbndb"]
            case.claims_unknown = bool(claimed) and all(
                i in self.records and not self.records[i] for i in claimed
            )
            hits = [hit_of(self.records[i] or {}) for i in ready if self.records[i]]
            best, rejected = judge.choose(case.want, hits)
            case.rejected.extend(rejected)
            case.rejected.extend(
                {"source": "isbndb", "key": i, "title": "", "why": "not in ISBNdb"}
                for i in ready
                if not self.records[i] and case.pool[i] == "isbndb"
            )
            if best is not None:
                # 'isbndb': a generator's claim verified; else the source that found it.
                self._resolved(case, best, case.pool.get(best.isbns[0], "isbndb"))

    def _load_known(self, isbns: set[str]) -> None:
        """Records already paid for: stored books and cached ISBN answers."""
        unknown = isbns - set(self.records)
        for isbn, book in load_books(self.session, unknown).items():
            record = (book.payload or {}).get("record")
            if (book.payload or {}).get("source") == "isbndb" and isinstance(record, dict):
                self.records[isbn] = record
        lookups = load_lookups(
            self.session, "isbn", unknown - set(self.records), self.settings.not_found_ttl_days
        )
        for isbn, lookup in lookups.items():
            if lookup.isbn13 is None:
                self.records[isbn] = None
            elif lookup.record:
                self.records[isbn] = lookup.record

    def _fetch(self, isbns: list[str]) -> Iterator[tuple[list[str], dict[str, dict[str, Any]]]]:
        """``(ISBNs asked, records found)`` per ISBNdb request, until its quota runs out."""
        if self.isbndb_out or not isbns:
            return
        bulk = self.settings.isbndb_bulk_enabled
        size = self.settings.isbndb_bulk_size if bulk else 1
        client = self.clients.isbndb
        for start in range(0, len(isbns), size):
            asked = isbns[start : start + size]
            try:
                if bulk:
                    found = client.books_bulk(asked)
                else:
                    record = client.book(asked[0])
                    found = {asked[0]: record} if record else {}
            except QuotaExhausted as exc:
                self.isbndb_out = exc
                log.warning("%s", exc)
                return
            yield asked, found

    # -- outcomes
    def _from_cache(self, cases: list[Case]) -> None:
        """Verified title mappings and recent not-found answers of the whole chain."""
        keys = {c.key for c in cases}
        known = load_lookups(self.session, "title", keys, self.settings.not_found_ttl_days)
        books = load_books(self.session, [k.isbn13 for k in known.values() if k.isbn13])
        for case in cases:
            lookup = known.get(case.key)
            if lookup is None:
                continue
            if lookup.isbn13 is None:
                case.skip_search = True  # the whole chain found nothing, lately
                continue
            book = books.get(lookup.isbn13)
            hit = hit_from_json((book.payload or {}).get("hit")) if book else None
            if book and hit and judge.judge(case.want, hit).accepted:
                self._resolved(case, hit, book.resolver or "cache", cached=True)

    def _resolved(self, case: Case, hit: Hit, source: str, cached: bool = False) -> None:
        row, isbn = case.row, hit.isbns[0]
        case.done = True
        evidence = self._evidence(case, hit, cached)
        elsewhere = judge.other_month(hit, self.year, self.month)
        if elsewhere:
            if not load_books(self.session, [isbn]):
                self._unresolved(case, f"dated {elsewhere}: left for that month", isbn=isbn)
                return
            # Already filed under its own month: this month's candidate points at
            # the one row, which keeps its month.
            evidence["filed_under"] = elsewhere
        else:
            insert_books(self.session, [self._book(row, hit, source)])
        row.status, row.isbn13, row.resolver = "resolved", isbn, source[:32]
        row.resolved_at, row.reresolved = row.last_tried_at, self.reresolving
        row.evidence = evidence
        remember(self.session, [Lookup("title", case.key, isbn)])
        self.session.flush()

    def _unresolved(self, case: Case, why: str, isbn: str | None = None) -> None:
        case.done = True
        case.row.status, case.row.isbn13, case.row.resolver = "unresolved", None, None
        evidence: dict[str, Any] = {"why": why, "rejected": case.rejected[:KEEP_REJECTED]}
        if isbn:
            evidence["isbn13"] = isbn
        case.row.evidence = evidence

    def _finish(self, cases: list[Case]) -> None:
        for case in cases:
            if case.done:
                continue
            if case.incomplete:
                case.row.evidence = {"why": "waiting: a source could not answer"}
                continue  # stays pending: tried again by the next attempt or re-resolution
            self._unresolved(
                case,
                "no source has this book"
                if not case.seen_work
                else "found, but no edition could be verified",
            )
            if not case.skip_search:
                remember(self.session, [Lookup("title", case.key, None)])
        self.session.flush()

    def _evidence(self, case: Case, hit: Hit, cached: bool) -> dict[str, Any]:
        return {
            "matched": {
                "source": hit.source,
                "title": hit.title[:300],
                "authors": list(hit.authors[:5]),
                "date": (hit.date or "")[:32],
                "binding": hit.binding,
                "key": hit.key,
            },
            "cached": cached,
            "searched": case.searched,
            "rejected": case.rejected[:KEEP_REJECTED],
        }

    def _book(self, row: Candidate, hit: Hit, resolver: str) -> dict[str, Any]:
        sources = sorted(row.generators or {})
        return {
            "isbn13": hit.isbns[0],
            "title": hit.title[:1000] or row.title,
            "authors": list(hit.authors) or list(row.authors or []),
            "publisher": bounded(hit.record.get("publisher"), 300) or row.publisher,
            "publication_date": bounded(hit.date, 32) or bounded(row.publication_date, 32),
            "found_year": self.year,
            "found_month": self.month,
            "generator": "both" if len(sources) > 1 else (sources[0] if sources else None),
            "resolver": resolver,
            "payload": {"source": hit.source, "hit": hit_to_json(hit), "record": _slim(hit.record)},
        }


def hit_to_json(hit: Hit) -> dict[str, Any]:
    """The hit a book was verified on, as stored with the book (for later judging)."""
    return {
        "source": hit.source,
        "title": hit.title,
        "authors": list(hit.authors),
        "date": hit.date,
        "isbns": list(hit.isbns[:1]),
        "binding": hit.binding,
        "language": hit.language,
        "key": hit.key,
    }


def hit_from_json(data: Any) -> Hit | None:
    """The stored form back as a :class:`Hit` (None when absent or malformed)."""
    if not isinstance(data, dict) or not data.get("isbns") or not data.get("title"):
        return None
    return Hit(
        source=str(data.get("source") or ""),
        title=str(data["title"]),
        authors=tuple(str(a) for a in data.get("authors") or []),
        date=data.get("date"),
        isbns=tuple(str(i) for i in data["isbns"]),
        edition_level=True,
        binding=data.get("binding"),
        language=data.get("language"),
        key=data.get("key"),
        record={},
    )


def _slim(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record without its long free-text fields (synopsis, overview, excerpt)."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if k not in ("synopsis", "overview", "excerpt")}
