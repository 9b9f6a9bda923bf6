"""ISBNdb API v2 emulation: single and bulk ISBN lookups and title search.

* ``GET /book/{isbn}`` (ISBN-10 or -13) -> ``{"book": {...}}``, or 404
  ``{"errorMessage": "Not Found"}``.
* ``POST /books`` with ``isbns=a,b,c`` (form, multipart or JSON; at most 1,000)
  -> ``{"total": found, "requested": asked, "data": [...]}``; unknown ISBNs are
  simply absent.
* ``GET /books/{query}?column=title&page=1&pageSize=20`` -> ``{"total", "books"}``,
  or 404 when nothing matches. Only title search is emulated (``column`` title or
  empty); another column is a 400 that says so.

The key goes in a plain ``Authorization: <key>`` header: missing -> 401
``{"message": "Unauthorized"}``; a ``Bearer`` token or a refused key -> 403 (the
API's authorizer denies it). A query-string key does not count, as the docs warn.
Limits: the request rate (``isbndb_rate_per_second``, 429 "Too Many Requests",
per second of a clock ``rate_clock_offset_seconds`` out of step with ours, after
``rate_jitter_ms`` of network jitter) and the day's calls (``isbndb_daily_limit``
or ``quota_exhausted.isbndb``; see :func:`backfill.sandbox.errors.isbndb_daily_quota`).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request

from backfill.sandbox import codes, errors, faults
from backfill.sandbox.catalogue import month_catalogue
from backfill.sandbox.plumbing import answer, json_response, provider_call
from backfill.sandbox.state import SandboxState
from backfill.sandbox.works import record_for_isbn

bp = Blueprint("isbndb", __name__)
MAX_BULK = 1000
MAX_PAGE_SIZE = 1000
DENIED = "User is not authorized to access this resource with an explicit deny"


def _gate(state: SandboxState) -> Response | None:
    """Authorization, then the daily quota and the rate, then random faults."""
    key = request.headers.get("Authorization", "").strip()
    if not key:
        return answer(errors.isbndb(401))
    if key.lower().startswith("bearer ") or key in state.config.reject_keys:
        return answer(errors.isbndb(403, DENIED))
    refusal = state.isbndb_admit()
    if refusal == "daily":
        return answer(errors.isbndb_daily_quota(state.config.isbndb_daily_status))
    if refusal == "rate":
        return answer(errors.isbndb(429, state.config.isbndb_rate_message))
    outcome = faults.isbndb_outcome(state)
    if outcome.kind == faults.ERROR:
        return answer(errors.isbndb(outcome.status))
    if outcome.kind == faults.RATE_LIMITED:
        return answer(errors.isbndb(429))
    if outcome.kind == faults.MALFORMED:
        g.sandbox_malformed = True  # the 200 body gets cut short
    return None


def _ok(body: Any) -> Response:
    """A 200 answer, cut short when the malformed fault struck this request."""
    if g.get("sandbox_malformed"):
        text = json.dumps(body)
        return Response(text[: max(1, len(text) // 2)], status=200, mimetype="application/json")
    return json_response(200, body)


@bp.get("/book/<isbn>")
@provider_call("isbndb", "GET /book/{isbn}", errors.isbndb)
def book(state: SandboxState, isbn: str) -> Response:
    """One book by ISBN-10 or ISBN-13."""
    refused = _gate(state)
    if refused:
        return refused
    record = lookup(isbn)
    return _ok({"book": record}) if record else answer(errors.isbndb(404))


@bp.post("/books")
@provider_call("isbndb", "POST /books", errors.isbndb)
def books_bulk(state: SandboxState) -> Response:
    """Many books by ISBN in one call."""
    refused = _gate(state)
    if refused:
        return refused
    wanted = _bulk_isbns()
    if not wanted:
        return answer(errors.isbndb(400, "isbns is required: a comma-separated list of ISBNs"))
    if len(wanted) > MAX_BULK:
        return answer(errors.isbndb(400, f"at most {MAX_BULK} ISBNs per request"))
    found: dict[str, dict[str, Any]] = {}
    for value in wanted:
        record = lookup(value)
        if record:
            found.setdefault(record["isbn13"], record)
    return _ok({"total": len(found), "requested": len(wanted), "data": list(found.values())})


@bp.get("/books/<path:query>")
@provider_call("isbndb", "GET /books/{query}", errors.isbndb)
def books_search(state: SandboxState, query: str) -> Response:
    """Title search, paginated."""
    refused = _gate(state)
    if refused:
        return refused
    column = request.args.get("column", "")
    if column not in ("", "title"):
        return answer(errors.isbndb(400, f"sandbox: column={column} is not emulated, only title"))
    try:
        page = int(request.args.get("page", 1))
        size = int(request.args.get("pageSize", 20))
    except ValueError:
        return answer(errors.isbndb(400, "page and pageSize must be integers"))
    if page < 1 or not 1 <= size <= MAX_PAGE_SIZE:
        return answer(errors.isbndb(400, f"page >= 1 and 1 <= pageSize <= {MAX_PAGE_SIZE}"))
    matches = search_title(query)
    if not matches:
        return answer(errors.isbndb(404))
    start = (page - 1) * size
    return _ok({"total": len(matches), "books": matches[start : start + size]})


def lookup(value: str) -> dict[str, Any] | None:
    """ISBNdb's record for an ISBN-10 or ISBN-13 (hyphens allowed), or None."""
    hit = record_for_isbn(value)
    return hit[0].record(hit[1]) if hit else None


def search_title(query: str) -> list[dict[str, Any]]:
    """Every edition whose title carries the query's distinctive words, by ISBN."""
    ref = codes.ref_of_title(query)
    if ref is None:
        return []
    catalogue = month_catalogue(ref.year, ref.month)
    if ref.index >= len(catalogue.books):
        return []
    found = catalogue.books[ref.index]
    return [found.record(e) for e in sorted(found.editions, key=lambda e: e.isbn13)]


def _bulk_isbns() -> list[str]:
    """The requested ISBNs, from a form/multipart field or a JSON body."""
    values: list[str] = request.form.getlist("isbns")
    if not values and request.is_json:
        data = request.get_json(silent=True)
        raw = data.get("isbns") if isinstance(data, dict) else None
        values = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    return [v.strip() for value in values for v in str(value).split(",") if v.strip()]
