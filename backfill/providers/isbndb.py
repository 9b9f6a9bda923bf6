"""ISBNdb API v2 client: bulk and single ISBN lookups, and title search.

Wire format: key in a plain ``Authorization: <key>`` header (no "Bearer");
``POST /books`` with the form body ``isbns=a,b,c`` answers
``{"total", "requested", "data": [...]}`` (unknown ISBNs simply absent);
``GET /book/{isbn}`` answers ``{"book": {...}}``; ``GET /books/{query}?column=title
&page=1&pageSize=N`` answers ``{"total", "books": [...]}``. 404 means "not found".

A 429 means the request rate was exceeded: wait for the next window and try
again (each try reserves again, so the ledger still equals the requests sent),
a bounded number of times. The answer that says the day's quota is spent marks
the quota exhausted for everybody until the reset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import requests
from stdnum import isbn as stdisbn
from stdnum.exceptions import ValidationError

from backfill import quota
from backfill.exceptions import ProviderError, QuotaExhausted
from backfill.providers.base import ProviderClient, mentions_daily_quota

log = logging.getLogger(__name__)

MAX_RATE_LIMITED_TRIES = 3


class IsbndbClient(ProviderClient):
    """ISBNdb lookups, each one reserved in the global ledger before it is sent."""

    name = "isbndb"

    def books_bulk(self, isbns: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Look up many ISBN-13s, ``ISBNDB_BULK_SIZE`` per request: ``{isbn13: book}``.

        ISBNs ISBNdb does not know are simply absent from the result.
        """
        wanted = list(dict.fromkeys(isbns))
        size = self.settings.isbndb_bulk_size
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), size):
            chunk = wanted[start : start + size]
            data = self._get_json("POST", "/books", data={"isbns": ",".join(chunk)})
            items = data.get("data") if isinstance(data, dict) else None
            if data is not None and not isinstance(items, list):
                raise ProviderError(self.name, 'malformed answer: no "data" list')
            for book in items or []:
                key = isbn13_of(book)
                if key:
                    found[key] = book
        return found

    def book(self, isbn: str) -> dict[str, Any] | None:
        """One book by ISBN, or None when ISBNdb does not know it."""
        data = self._get_json("GET", f"/book/{quote(isbn, safe='')}")
        if data is None:
            return None
        book = data.get("book") if isinstance(data, dict) else None
        if not isinstance(book, dict):
            raise ProviderError(self.name, 'malformed answer: no "book" object')
        return book

    def search_title(self, title: str, page_size: int = 20) -> list[dict[str, Any]]:
        """Editions whose title matches ``title`` (first page only)."""
        data = self._get_json(
            "GET",
            f"/books/{quote(title, safe='')}",
            params={"column": "title", "page": 1, "pageSize": page_size},
        )
        if data is None:
            return []
        books = data.get("books") if isinstance(data, dict) else None
        if not isinstance(books, list):
            raise ProviderError(self.name, 'malformed answer: no "books" list')
        return [book for book in books if isinstance(book, dict)]

    def _get_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send with the key; None on 404; retries a 429 a few times within the rate."""
        key = self._key(self.settings.isbndb_api_key, "ISBNDB_API_KEY")
        url = f"{self.settings.isbndb_base_url}{path}"
        for attempt in range(1, MAX_RATE_LIMITED_TRIES + 1):
            response = self._send(method, url, headers={"Authorization": key}, **kwargs)
            if response.status_code == 404:
                return None
            if response.status_code == 429 and not self._is_daily_quota_answer(response):
                if attempt < MAX_RATE_LIMITED_TRIES:
                    wait = _retry_after(response)
                    log.warning(
                        "isbndb rate limited (try %d of %d), waiting %.1fs",
                        attempt,
                        MAX_RATE_LIMITED_TRIES,
                        wait,
                    )
                    time.sleep(wait)
                    continue
                if mentions_daily_quota(response, ("limit exceeded",)):
                    # Still "Limit Exceeded" after waiting out the rate window:
                    # the key's daily calls are spent.
                    resets_at = quota.mark_exhausted(self.name, self.settings)
                    raise QuotaExhausted(self.name, resets_at, self._error_text(response))
            return self._json(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        # ISBNdb documents one answer for "the key reaches the request limit":
        # 429 {"message": "Limit Exceeded"} -- the per-second limit and the
        # day's quota alike. An answer that names the day (some keys get a 403
        # "daily hits reached") is the quota at once; a bare "Limit Exceeded"
        # is first waited out as a rate limit and only taken for the day's
        # quota when it persists (see _get_json).
        return response.status_code in (403, 429) and mentions_daily_quota(
            response, ("daily", "per day", "quota")
        )


def _retry_after(response: requests.Response) -> float:
    """Seconds to wait before retrying a 429 (Retry-After, else one second window)."""
    try:
        return min(max(float(response.headers.get("Retry-After", 1)), 0.1), 10.0)
    except ValueError:
        return 1.0


def isbn13_of(book: dict[str, Any]) -> str | None:
    """The valid ISBN-13 of an ISBNdb record (from ``isbn13``, else ``isbn``), or None."""
    for field in ("isbn13", "isbn", "isbn10"):
        value = book.get(field)
        if isinstance(value, str | int) and value:
            try:
                return str(stdisbn.to_isbn13(stdisbn.validate(str(value))))
            except ValidationError:
                continue
    return None
