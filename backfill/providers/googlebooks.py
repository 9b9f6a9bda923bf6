"""Google Books title search: ``GET /books/v1/volumes``.

Wire format (developers.google.com/books/docs/v1/reference/volumes/list):
``q=intitle:"<title>" inauthor:"<author>"``, ``maxResults`` (at most 40),
``printType=books`` and, when configured, the API key as ``key=``. The answer is
``{"kind": "books#volumes", "totalItems", "items": [...]}``, with no ``items``
at all when nothing matched. A volume is one edition: its
``volumeInfo.industryIdentifiers`` (ISBN_13, ISBN_10, OTHER) are that edition's.

Google answers 429 RESOURCE_EXHAUSTED both for a per-minute rate and for the
day's cap (keyless calls share one global cap); only the latter names the day,
"Queries per day", so only it closes the day. Older answers use 403 with the
reason ``rateLimitExceeded``: that is a rate limit too, retried.
"""

from __future__ import annotations

from typing import Any

import requests

from backfill.exceptions import ProviderError
from backfill.providers.base import Hit, ProviderClient, mentions_daily_quota
from backfill.providers.hits import bounded, full_title, isbn13s, text_of, texts_of

MAX_RESULTS = 40
_ISBN_TYPES = ("ISBN_13", "ISBN_10")
_DAY_WORDS = ("per day", "perday", "daily")
_RATE_WORDS = ("per minute", "perminute", "per 100 seconds", "per second")


class GoogleBooksClient(ProviderClient):
    """Google Books' volume search, each request reserved in the global ledger first."""

    name = "googlebooks"

    def search(self, title: str, author: str | None = None, limit: int = 10) -> list[Hit]:
        """Volumes (editions) whose title holds ``title``, by ``author`` when given."""
        title = _term(title)
        if not title:
            return []
        query = f'intitle:"{title}"'
        if author and _term(author):
            query += f' inauthor:"{_term(author)}"'
        params: dict[str, Any] = {
            "q": query,
            "maxResults": max(1, min(limit, MAX_RESULTS)),
            "printType": "books",
        }
        key = self.settings.google_books_api_key
        if key is not None:
            params["key"] = key.get_secret_value()  # never logged: errors carry no URL
        data = self._request_json(
            "GET", f"{self.settings.google_books_base_url}/books/v1/volumes", params=params
        )
        if not isinstance(data, dict):
            raise ProviderError(self.name, "malformed answer: not an object")
        items = data.get("items")
        if items is None:  # totalItems 0: Google leaves "items" out
            return []
        if not isinstance(items, list):
            raise ProviderError(self.name, 'malformed answer: "items" is not a list')
        return [hit for hit in map(hit_of, items) if hit is not None]

    def _is_daily_quota_answer(self, response: requests.Response) -> bool:
        if response.status_code not in (403, 429):
            return False
        if mentions_daily_quota(response, _DAY_WORDS):
            return True
        # A 429 that speaks of a quota without naming a per-minute window is the
        # shared keyless daily cap.
        return (
            response.status_code == 429
            and mentions_daily_quota(response, ("quota",))
            and not mentions_daily_quota(response, _RATE_WORDS)
        )

    def _is_rate_limit_answer(self, response: requests.Response) -> bool:
        return response.status_code == 429 or (
            response.status_code == 403
            and mentions_daily_quota(response, ("ratelimitexceeded", "userratelimitexceeded"))
        )


def _term(value: str) -> str:
    """A value for an ``intitle:"…"`` term: double quotes would end it early."""
    return " ".join(value.replace('"', " ").split())


def hit_of(volume: Any) -> Hit | None:
    """A volume as an edition-level :class:`Hit`; None when it has no title."""
    if not isinstance(volume, dict):
        return None
    info = volume.get("volumeInfo")
    info = info if isinstance(info, dict) else {}
    title = full_title(info.get("title"), info.get("subtitle"))
    if not title:
        return None
    identifiers = info.get("industryIdentifiers")
    isbns = isbn13s(
        ident.get("identifier")
        for ident in (identifiers if isinstance(identifiers, list) else [])
        if isinstance(ident, dict) and ident.get("type") in _ISBN_TYPES
    )
    sale = volume.get("saleInfo")
    ebook = isinstance(sale, dict) and sale.get("isEbook") is True
    print_type = text_of(info.get("printType"), 32)
    return Hit(
        source="googlebooks",
        title=title,
        authors=texts_of(info.get("authors")),
        date=text_of(info.get("publishedDate"), 64),
        isbns=isbns,
        edition_level=True,
        binding="ebook" if ebook else print_type.lower() if print_type else None,
        language=text_of(info.get("language"), 16),
        key=text_of(volume.get("id"), 64),
        record=bounded(volume),
    )
