"""Open Library title search: ``GET /search.json``, keyless.

Wire format (openlibrary.org/dev/docs/api/search): query parameters ``title``,
``author``, ``fields`` and ``limit``; the answer is ``{"numFound", "start",
"docs": [...]}``. A doc is a *work*, not an edition: its ``isbn`` list (only
there because ``fields`` names it) is the union of every edition's ISBNs,
translations included, in no useful order. So a hit here is work level
(``edition_level=False``): the resolver must never take "the first ISBN" of it.

Open Library asks clients to identify themselves: the User-Agent carries
``OPENLIBRARY_CONTACT`` when it is set (about 3 requests/s instead of 1), and is
never the generic python-requests one, which it has refused.
"""

from __future__ import annotations

from typing import Any

from backfill.exceptions import ProviderError
from backfill.providers.base import USER_AGENT, Hit, ProviderClient
from backfill.providers.hits import bounded, full_title, isbn13s, text_of, texts_of

# The doc fields asked for: the work, its authors and dates, every edition's
# ISBNs and languages (subtitle too, so a hit's title is the full one).
FIELDS = "key,title,subtitle,author_name,first_publish_year,isbn,publish_date,language"
MAX_LIMIT = 100


class OpenLibraryClient(ProviderClient):
    """Open Library's search, each request reserved in the global ledger first."""

    name = "openlibrary"
    rate_limit_min_wait = 1.0  # its rate is counted per second

    def user_agent(self) -> str:
        """``backfill/<version> (<contact>)``, or without the contact when none is set."""
        contact = self.settings.openlibrary_contact
        return f"{USER_AGENT} ({contact})" if contact else USER_AGENT

    def search(self, title: str, author: str | None = None, limit: int = 10) -> list[Hit]:
        """Works whose title (or an edition's, a translation's) matches ``title``,
        by ``author`` when given, in Open Library's relevance order."""
        if not title.strip():
            return []
        params: dict[str, Any] = {"title": title.strip()}
        if author and author.strip():
            params["author"] = author.strip()
        params["fields"] = FIELDS
        params["limit"] = max(1, min(limit, MAX_LIMIT))
        data = self._request_json(
            "GET", f"{self.settings.openlibrary_base_url}/search.json", params=params
        )
        docs = data.get("docs") if isinstance(data, dict) else None
        if not isinstance(docs, list):
            raise ProviderError(self.name, 'malformed answer: no "docs" list')
        return [hit for hit in map(hit_of, docs) if hit is not None]


def hit_of(doc: Any) -> Hit | None:
    """A search.json doc as a work-level :class:`Hit`; None when it has no title."""
    if not isinstance(doc, dict):
        return None
    title = full_title(doc.get("title"), doc.get("subtitle"))
    if not title:
        return None
    isbns = doc.get("isbn")
    languages = texts_of(doc.get("language"), limit=100)
    return Hit(
        source="openlibrary",
        title=title,
        authors=texts_of(doc.get("author_name")),
        date=text_of(doc.get("first_publish_year"), 64),
        isbns=isbn13s(isbns if isinstance(isbns, list) else []),
        edition_level=False,
        binding=None,
        # A work lists every edition's language; only a single one says anything.
        language=languages[0] if len(languages) == 1 else None,
        key=text_of(doc.get("key"), 64),
        record=bounded(doc),
    )
