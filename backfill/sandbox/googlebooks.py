"""Google Books emulation: ``GET /books/v1/volumes``.

Params: ``q`` (required: free text plus ``intitle:``, ``inauthor:``,
``inpublisher:`` and ``isbn:`` terms, values quoted or bare), ``maxResults``
(default 10, at most 40), ``startIndex``, ``printType`` (``all``, ``books``,
``magazines``), ``key`` (optional).

Answer: ``{"kind": "books#volumes", "totalItems": N, "items": [...]}``, or
``{"kind": "books#volumes", "totalItems": 0}`` (no ``items``) when nothing
matches. An item is an **edition**, one per ISBNdb record with the same ISBNs:
``{"kind": "books#volume", "id", "etag", "selfLink", "volumeInfo": {"title",
"subtitle"?, "authors", "publisher", "publishedDate" ("2023-05-12", or "2023" for a
reprint), "description", "industryIdentifiers": [{"type": "ISBN_13",
"identifier"}, {"type": "ISBN_10", ...}], "pageCount", "printType": "BOOK",
"categories", "language", "infoLink", "canonicalVolumeLink"}, "saleInfo":
{"country", "saleability", "isEbook"}, "accessInfo": {...}}``.

Limits: calls without ``key=`` share ``googlebooks_keyless_daily_limit`` a day,
then 429 RESOURCE_EXHAUSTED in Google's error JSON; a key in ``reject_keys`` is a
400. Faults as for the other providers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, request

from backfill.sandbox import errors, faults, works
from backfill.sandbox.editions import Edition, is_print, isbn10
from backfill.sandbox.plumbing import answer, json_response, provider_call
from backfill.sandbox.state import SandboxState

bp = Blueprint("googlebooks", __name__)
ENDPOINT = "GET /books/v1/volumes"
MAX_RESULTS = 40
_TERM = re.compile(r"\b(intitle|inauthor|inpublisher|isbn|subject):(\"[^\"]*\"|[^\s+\"]+)")
PER_MINUTE = (
    "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' "
    "of service 'books.googleapis.com' for consumer 'project_number:000000000000'."
)


@bp.get("/books/v1/volumes")
@provider_call("googlebooks", ENDPOINT, errors.googlebooks)
def volumes(state: SandboxState) -> Response:
    """One volumes search."""
    args = request.args
    key = args.get("key")
    if key is not None and (not key.strip() or key in state.config.reject_keys):
        return answer(errors.googlebooks_bad_key())
    if not state.googlebooks_admit(keyless=not key):
        return answer(errors.googlebooks_daily_quota())
    outcome = faults.search_outcome(state, "googlebooks")
    if outcome.kind == faults.ERROR:
        return answer(errors.googlebooks(outcome.status))
    if outcome.kind == faults.RATE_LIMITED:
        return answer(errors.googlebooks(429, PER_MINUTE))
    q = args.get("q", "")
    if not q.strip():
        return answer(errors.googlebooks(400, "Missing query.", "queryRequired"))
    try:
        size = int(args.get("maxResults", 10))
        start = int(args.get("startIndex", 0))
    except ValueError:
        return answer(errors.googlebooks(400, "Invalid value at 'max_results' (TYPE_INT32)"))
    if not 0 <= size <= MAX_RESULTS or start < 0:
        return answer(
            errors.googlebooks(400, f"Values must be within the range: [0, {MAX_RESULTS}]")
        )
    found = [] if args.get("printType", "all") == "magazines" else _matches(q)
    body: dict[str, Any] = {"kind": "books#volumes", "totalItems": len(found)}
    if found[start : start + size]:
        body["items"] = [_volume(e) for e in found[start : start + size]]
    if outcome.kind == faults.MALFORMED:
        text = json.dumps(body)
        return Response(text[: max(1, len(text) // 2)], status=200, mimetype="application/json")
    return json_response(200, body)


def _matches(q: str) -> list[Edition]:
    """The volumes a query finds: by ISBN, else by the title's code words, filtered by
    author and publisher words."""
    terms: dict[str, list[str]] = {}
    for name, value in _TERM.findall(q):
        terms.setdefault(name, []).append(value.strip('"'))
    free = _TERM.sub(" ", q).replace("+", " ")
    if terms.get("isbn"):
        found = works.volume_of_isbn(terms["isbn"][0])
        return [found] if found else []
    book = works.book_for_title(" ".join([*terms.get("intitle", []), free]))
    if book is None:
        return []
    author = " ".join(terms.get("inauthor", []))
    publisher = " ".join(terms.get("inpublisher", []))
    return [
        e
        for e in works.volumes_of(book)
        if works.authors_match_loosely(author, e.authors)
        and works.authors_match_loosely(publisher, (e.publisher,))
    ]


def _volume(edition: Edition) -> dict[str, Any]:
    """One ``books#volume``."""
    vid = works.volume_id(edition.isbn13)
    title, subtitle = works.split_title(edition.title)
    info: dict[str, Any] = {"title": title}
    if subtitle:
        info["subtitle"] = subtitle
    link = f"https://books.google.com/books?id={vid}"
    info |= {
        "authors": list(edition.authors),
        "publisher": edition.publisher,
        # Google often knows only the year of a later printing.
        "publishedDate": edition.date_published
        if edition.edition == "1st"
        else edition.date_published[:4],
        "description": f"{edition.title}, published by {edition.publisher}.",
        "industryIdentifiers": [
            {"type": "ISBN_13", "identifier": edition.isbn13},
            {"type": "ISBN_10", "identifier": isbn10(edition.isbn13)},
        ],
        "readingModes": {"text": not is_print(edition), "image": False},
        "pageCount": edition.pages,
        "printType": "BOOK",
        "categories": ["Fiction"],
        "language": edition.language,
        "previewLink": f"{link}&hl=&source=gbs_api",
        "infoLink": f"{link}&hl=&source=gbs_api",
        "canonicalVolumeLink": f"https://books.google.com/books/about/?id={vid}",
    }
    return {
        "kind": "books#volume",
        "id": vid,
        "etag": works.volume_id(edition.isbn13 + "/etag")[:11],
        "selfLink": f"https://www.googleapis.com/books/v1/volumes/{vid}",
        "volumeInfo": info,
        "saleInfo": {
            "country": "US",
            "saleability": "NOT_FOR_SALE",
            "isEbook": not is_print(edition),
        },
        "accessInfo": {
            "country": "US",
            "viewability": "NO_PAGES",
            "embeddable": False,
            "publicDomain": False,
        },
    }
