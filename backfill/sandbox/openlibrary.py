"""Open Library search emulation: ``GET /search.json``.

Params: ``q`` (free text; ``isbn:…``/``title:…``/``author:…`` fielded parts
understood), ``title``, ``author``, ``isbn``, ``fields`` (comma list, ``*`` for all;
default: every field below), ``limit`` (default 100, at most 1000), ``offset`` or
``page``. Keyless.

Answer: ``{"numFound": N, "start": S, "numFoundExact": true, "docs": [...],
"num_found": N, "q": "<q or empty>", "offset": <offset or null>}``. A doc is a
**work**: ``key`` ("/works/OL…W"), ``type``, ``title`` and ``subtitle`` (only
when there is one: "Title: Subtitle" is split, as Open Library stores it), ``author_name``,
``author_key``, ``first_publish_year``, ``edition_count``, ``edition_key``,
``publish_date`` (free text such as "May 12, 2023"), ``publish_year``, ``isbn``
(every edition's ISBN-10 and -13, translations included, in no useful order),
``language``, ``publisher``, ``number_of_pages_median``, ``ebook_access``,
``has_fulltext``, ``cover_i``.

Limits: requests per second per User-Agent (3 when it names a contact with an
"@" or "http", else 1: config ``openlibrary_rate_identified`` / ``_anonymous``);
beyond that 429, an HTML page like Open Library's front servers answer. Faults as
for the other providers (:func:`backfill.sandbox.faults.search_outcome`).
"""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

from flask import Blueprint, Response, request

from backfill.sandbox import codes, errors, faults, works
from backfill.sandbox.plumbing import answer, json_response, provider_call
from backfill.sandbox.state import SandboxState

bp = Blueprint("openlibrary", __name__)
ENDPOINT = "GET /search.json"
MAX_LIMIT = 1000
FIELDS = (
    "key", "type", "title", "subtitle", "author_name", "author_key", "first_publish_year",
    "edition_count", "edition_key", "publish_date", "publish_year", "isbn", "language",
    "publisher", "number_of_pages_median", "ebook_access", "has_fulltext", "cover_i",
)  # fmt: skip
_FIELDED = re.compile(r"\b(isbn|title|author):(\"[^\"]*\"|\S+)", re.IGNORECASE)


@bp.get("/search.json")
@provider_call("openlibrary", ENDPOINT, errors.openlibrary)
def search(state: SandboxState) -> Response:
    """One search: the matching works, a page of them, with the asked fields."""
    if state.config.quota_exhausted.openlibrary or not state.openlibrary_admit(
        request.headers.get("User-Agent", "")
    ):
        return _page(429)
    outcome = faults.search_outcome(state, "openlibrary")
    if outcome.kind == faults.ERROR:
        return _page(outcome.status)
    if outcome.kind == faults.RATE_LIMITED:
        return _page(429)
    args = request.args
    q = args.get("q", "")
    try:
        limit = int(args.get("limit", 100))
        page = int(args.get("page", 1))
        offset = int(args["offset"]) if "offset" in args else None
    except ValueError:
        return answer(errors.openlibrary(400, "limit, page and offset must be integers"))
    if not 0 <= limit <= MAX_LIMIT or page < 1 or (offset is not None and offset < 0):
        return answer(errors.openlibrary(400, f"0 <= limit <= {MAX_LIMIT}, page >= 1"))
    found = _matches(q, args.get("title", ""), args.get("author", ""), args.get("isbn", ""))
    start = offset if offset is not None else (page - 1) * limit
    wanted = _fields(args.get("fields"))
    body = {
        "numFound": len(found),
        "start": start,
        "numFoundExact": True,
        "docs": [_doc(w, wanted) for w in found[start : start + limit]],
        "num_found": len(found),
        "q": q,
        "offset": offset,
    }
    if outcome.kind == faults.MALFORMED:
        text = json.dumps(body)
        return Response(text[: max(1, len(text) // 2)], status=200, mimetype="application/json")
    return json_response(200, body)


def _matches(q: str, title: str, author: str, isbn: str) -> list[works.Work]:
    """The works a query finds: by ISBN, else by the title's code words, then by author."""
    fielded = {name.lower(): value.strip('"') for name, value in _FIELDED.findall(q)}
    free = _FIELDED.sub(" ", q)
    isbn = isbn or fielded.get("isbn", "")
    if isbn:
        work = works.work_of_isbn(isbn)
        return [work] if work else []
    text = " ".join(part for part in (title, fielded.get("title", ""), free) if part)
    book = works.book_for_title(text) if text.strip() else None
    if book is None:
        return []
    author = " ".join(part for part in (author, fielded.get("author", "")) if part)
    return [w for w in works.works_of(book) if works.authors_match_loosely(author, w.authors)]


def _fields(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return FIELDS
    asked = [f.strip() for f in raw.split(",") if f.strip()]
    return FIELDS if "*" in asked else tuple(f for f in asked if f in FIELDS)


def _doc(work: works.Work, wanted: tuple[str, ...]) -> dict[str, Any]:
    """One search doc with only the ``wanted`` fields (absent values left out)."""
    number = int(work.key[len("/works/OL") : -1])
    editions = work.editions
    title, subtitle = works.split_title(work.title)
    full: dict[str, Any] = {
        "key": work.key,
        "type": "work",
        "title": title,
        "subtitle": subtitle,
        "author_name": list(work.authors),
        "author_key": [f"OL{_author_number(a)}A" for a in work.authors],
        "first_publish_year": work.first_publish_year,
        "edition_count": len(editions),
        "edition_key": [f"OL{number * 10 + i}M" for i in range(len(editions))],
        "publish_date": work.publish_dates(),
        "publish_year": sorted({int(e.date_published[:4]) for e in editions}),
        "isbn": work.isbns(),
        "language": sorted({works.OL_LANGUAGES.get(e.language, e.language) for e in editions}),
        "publisher": sorted({e.publisher for e in editions}),
        "number_of_pages_median": int(statistics.median(e.pages for e in editions)),
        "ebook_access": "no_ebook",
        "has_fulltext": False,
        "cover_i": number % 15_000_000,
    }
    return {name: full[name] for name in wanted if full[name] is not None}


def _author_number(name: str) -> int:
    letters = "".join(codes.tokens(name))
    return sum(ord(c) * 31**i for i, c in enumerate(letters)) % 9_000_000 + 10_000


def _page(status: int) -> Response:
    code, html = errors.openlibrary_page(status)
    return Response(html, status=code, mimetype="text/html")
