"""Store a generator's answer and merge its books into the month's candidates.

* ISBNs are checked with python-stdnum (checksum and 978/979 prefix); ISBN-10s
  become ISBN-13s. What each generator claimed is kept as given *and* as a valid
  ISBN-13, so two generators' different valid ISBNs for one book are both tried.
* Two entries are one book when :func:`backfill.match.same_book` says so: equal
  main titles (spelling variants tolerated) and compatible first authors. Two
  different titles by one author are never merged on shared words.
* A book named only with ISBNs that fail the checksum is a hallucination: kept
  as ``invalid_isbn``, never looked up, not counted as generated -- unless a
  generator names it with a valid ISBN or none, which makes it ``pending``.

Nothing here commits: the caller commits the answer together with the call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session
from stdnum import isbn as stdisbn
from stdnum.exceptions import ValidationError

from backfill import candidates as store
from backfill.match import same_book
from backfill.models import Candidate, Generation
from backfill.providers.base import BookCandidate
from backfill.providers.base import Generation as Answer


def valid_isbn13(raw: str | None) -> str | None:
    """The ISBN-13 for ``raw`` (ISBN-10 converted), or None when it is not a valid ISBN."""
    if not raw:
        return None
    try:
        return str(stdisbn.to_isbn13(stdisbn.validate(raw)))
    except ValidationError:
        return None


def _entry(book: BookCandidate, rank: int) -> dict[str, Any]:
    """What one generator said of a book, bounded for storage."""
    raw = store.bounded(book.isbn, store.ISBN_MAX)
    valid = valid_isbn13(raw)
    return {
        "title": store.bounded(book.title, store.TITLE_MAX),
        "authors": store.bounded_authors(book.authors),
        "publication_date": store.bounded(book.publication_date, store.DATE_MAX),
        "isbns": [raw] if raw else [],
        "isbn13s": [valid] if valid else [],
        "rank": rank,
    }


def claimed_isbns(candidate: Candidate) -> list[str]:
    """Every valid ISBN-13 the generators claimed for ``candidate``, in generator order."""
    seen: dict[str, None] = {}
    for name in sorted(candidate.generators or {}):
        entry = candidate.generators[name]
        for isbn in entry.get("isbn13s") or [] if isinstance(entry, dict) else []:
            seen.setdefault(str(isbn), None)
    return list(seen)


def namings(candidate: Candidate) -> list[tuple[str, list[str]]]:
    """(title, authors) as the candidate holds it, then as each generator named it."""
    found = [(candidate.title, list(candidate.authors or []))]
    for entry in (candidate.generators or {}).values():
        if isinstance(entry, dict) and entry.get("title"):
            found.append((str(entry["title"]), list(entry.get("authors") or [])))
    return found


def _hallucinated(generators: dict[str, Any]) -> bool:
    """Every naming quotes an ISBN, and none of them is valid."""
    entries = [e for e in generators.values() if isinstance(e, dict)]
    return bool(entries) and all(e.get("isbns") and not e.get("isbn13s") for e in entries)


def _absorb(kept: Candidate, name: str, entry: dict[str, Any], book: BookCandidate) -> None:
    generators = dict(kept.generators or {})
    if name in generators:  # the same list names it twice: keep both claims
        old = dict(generators[name])
        for key in ("isbns", "isbn13s"):
            old[key] = list(dict.fromkeys([*(old.get(key) or []), *entry[key]]))
        generators[name] = old
    else:
        generators[name] = entry
    new_isbns = set(entry["isbn13s"]) - set(claimed_isbns(kept))
    kept.generators = generators
    kept.publisher = kept.publisher or store.bounded(book.publisher, store.PUBLISHER_MAX)
    kept.publication_date = kept.publication_date or entry["publication_date"]
    kept.reason = kept.reason or store.bounded(book.reason, store.REASON_MAX)
    kept.authors = list(kept.authors or []) or entry["authors"]
    if kept.status == "invalid_isbn" and not _hallucinated(generators):
        kept.status = "pending"
    elif kept.status == "unresolved" and new_isbns:
        kept.status = "pending"  # a new claim is worth checking


def merge(
    month: list[Candidate], name: str, books: Iterable[BookCandidate], backfill_id: int
) -> list[Candidate]:
    """Merge one generator's books into the month's candidates ``month`` (updated
    in place); returns the new candidate rows (not yet added to a session)."""
    added: list[Candidate] = []
    for rank, book in enumerate(books):
        entry = _entry(book, rank)
        if not entry["title"]:
            continue
        for kept in month:
            if any(same_book(t, a, entry["title"], entry["authors"]) for t, a in namings(kept)):
                _absorb(kept, name, entry, book)
                break
        else:
            generators = {name: entry}
            row = Candidate(
                backfill_id=backfill_id,
                title=entry["title"],
                authors=entry["authors"],
                publisher=store.bounded(book.publisher, store.PUBLISHER_MAX),
                publication_date=entry["publication_date"],
                reason=store.bounded(book.reason, store.REASON_MAX),
                generators=generators,
                status="invalid_isbn" if _hallucinated(generators) else "pending",
                tries=0,
                evidence={},
            )
            month.append(row)
            added.append(row)
    return added


def store_answer(
    session: Session,
    backfill_id: int,
    attempt_id: int | None,
    answer: Answer,
    batch_size: int,
) -> Generation:
    """Keep one generator's answer (capped at ``batch_size``) and merge its books
    into the month's candidates; flushed, not committed."""
    books = answer.books[:batch_size]
    generation = Generation(
        backfill_id=backfill_id,
        attempt_id=attempt_id,
        provider=answer.provider,
        model=store.bounded(answer.model, 200),
        prompt_version=store.bounded(answer.prompt_version, 64),
        books=[
            _entry(book, rank) | {"reason": store.bounded(book.reason, store.REASON_MAX)}
            for rank, book in enumerate(books)
        ],
        tokens_in=answer.tokens_in,
        tokens_out=answer.tokens_out,
    )
    session.add(generation)
    month = store.of_month(session, backfill_id)
    session.add_all(merge(month, answer.provider, books, backfill_id))
    session.flush()
    return generation
