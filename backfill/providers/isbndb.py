"""ISBNdb API v2 client: bulk and single ISBN lookups, and title search.

Wire format: key in a plain ``Authorization: <key>`` header (no "Bearer");
``POST /books`` with the form body ``isbns=a,b,c`` answers
``{"total", "requested", "data": [...]}`` (unknown ISBNs simply absent);
``GET /book/{isbn}`` answers ``{"book": {...}}``; ``GET /books/{query}?column=title
&page=1&pageSize=N`` answers ``{"total", "books": [...]}``. 404 means "not found".

A 429 is retried in the shared loop (:meth:`ProviderClient._request_json`), each
try reserved again, so the ledger still equals the requests sent. ISBNdb answers
one bare ``429 {"message": "Limit Exceeded"}`` for its per-second limit and for
the day's quota alike. It is taken for the day's quota only when the ledger's
count of the day is near the daily limit (:func:`backfill.quota.near_daily_limit`)
and it outlasts every try; anywhere else in the day it is a rate answer, backed
off and retried, and a run of them never closes the day. An answer that names
the day is the quota at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import requests
from stdnum import isbn as stdisbn
from stdnum.exceptions import ValidationError

from backfill import quota
from backfill.config import DEFAULT_PROVIDER_MAX_TRIES
from backfill.exceptions import ProviderError, QuotaExhausted
from backfill.providers.base import Hit, ProviderClient, _Retryable, mentions_daily_quota
from backfill.providers.hits import bounded, isbn13s, text_of, texts_of

# Kept for callers that predate PROVIDER_MAX_TRIES: tries of a request under the
# default settings (read ``settings.provider_max_tries`` instead).
MAX_RATE_LIMITED_TRIES = DEFAULT_PROVIDER_MAX_TRIES


class IsbndbClient(ProviderClient):
    """ISBNdb lookups, each one reserved in the global ledger before it is sent."""

    name = "isbndb"
    rate_limit_min_wait = 1.0  # ISBNdb's rate window is the second

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
        """Send with the key (retrying in the shared loop); None on 404."""
        key = self._key(self.settings.isbndb_api_key, "ISBNDB_API_KEY")
        url = f"{self.settings.isbndb_base_url}{path}"
        return self._request_json(
            method, url, not_found=True, headers={"Authorization": key}, **kwargs
        )

    def _tries_spent(self, last: _Retryable) -> None:
        response = last.response
        if (
            self.settings.provider_max_tries > 1  # a single try has not waited anything out
            and response is not None
            and response.status_code == 429
            and mentions_daily_quota(response, ("limit exceeded",))
            and quota.near_daily_limit(self.name, self.settings)
        ):
            # Still "Limit Exceeded" after waiting out the rate window on every
            # try, with the day's count near the limit: the key's daily calls are
            # spent. Far from the limit it is the rate (a window out of step with
            # ours): the ProviderError below, never the day closed.
            resets_at = quota.mark_exhausted(self.name, self.settings)
            raise QuotaExhausted(self.name, resets_at, self._error_text(response))

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        # ISBNdb documents one answer for "the key reaches the request limit":
        # 429 {"message": "Limit Exceeded"} -- the per-second limit and the
        # day's quota alike. An answer that names the day (some keys get a 403
        # "daily hits reached") is the quota at once; a bare "Limit Exceeded"
        # is first waited out as a rate limit and only taken for the day's
        # quota when it persists near the daily limit (see _tries_spent).
        return response.status_code in (403, 429) and mentions_daily_quota(
            response, ("daily", "per day", "quota")
        )


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


def hit_of(record: dict[str, Any]) -> Hit:
    """An ISBNdb record as a :class:`Hit` (edition level: the ISBN is this edition's)."""
    isbns = isbn13s(record.get(field) for field in ("isbn13", "isbn", "isbn10"))
    binding = text_of(record.get("binding"), 64)
    return Hit(
        source="isbndb",
        # title_long carries the subtitle ("Title: Subtitle") when ISBNdb has one.
        title=text_of(record.get("title_long")) or text_of(record.get("title")) or "",
        authors=texts_of(record.get("authors")),
        date=text_of(record.get("date_published"), 64),
        isbns=isbns,
        edition_level=True,
        binding=binding,
        language=text_of(record.get("language"), 16),
        key=isbns[0] if isbns else None,
        record=bounded(record),
    )
