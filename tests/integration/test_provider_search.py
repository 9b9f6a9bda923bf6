"""Title-search adapters over real HTTP: Open Library, Google Books, ISBNdb, one Hit shape.

The wire details (parameter names, the User-Agent, the key, quota answers) are
checked against a canned server serving the documented sample answers
(openlibrary.org/dev/docs/api/search; developers.google.com/books/docs/v1/
reference/volumes); the search itself also runs against the sandbox's emulated
endpoints once it serves them.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
import requests

from backfill import quota
from backfill.config import Settings, load_settings
from backfill.db import session_factory
from backfill.exceptions import ProviderError, QuotaExhausted
from backfill.providers import GoogleBooksClient, Hit, IsbndbClient, OpenLibraryClient
from backfill.providers.base import USER_AGENT
from backfill.providers.isbndb import hit_of
from tests.integration.test_provider_canned import Canned, CannedServer, canned, ledger_calls  # noqa: F401
from tests.support.sandbox_fixture import Sandbox

FAST = {
    "openlibrary_rate_per_second": 1000,
    "google_books_rate_per_minute": 0,
    "isbndb_rate_per_second": 1000,
    "http_timeout_seconds": 3.0,
    "provider_retry_backoff_seconds": 0.01,
    "provider_retry_backoff_max_seconds": 0.05,
}
# The documented doc, with the fields we ask for filled in.
OL_DOC = {
    "key": "/works/OL27448W",
    "title": "The Lord of the Rings",
    "subtitle": "The Fellowship of the Ring",
    "author_name": ["J. R. R. Tolkien"],
    "first_publish_year": 1954,
    # ISBN-10 and -13 of one edition, an invalid one, a repeat: in no useful order
    "isbn": ["0261102354", "9780261102354", "0261102355", "9780618640157", "9780261102354"],
    "publish_date": ["1954", "October 12, 2005"],
    "language": ["eng"],
}
GB_VOLUME = {
    "kind": "books#volume",
    "id": "yl4dILkcqm4C",
    "etag": "abc",
    "selfLink": "https://www.googleapis.com/books/v1/volumes/yl4dILkcqm4C",
    "volumeInfo": {
        "title": "The Lord of the Rings",
        "subtitle": "One Volume",
        "authors": ["J.R.R. Tolkien"],
        "publisher": "Houghton Mifflin Harcourt",
        "publishedDate": "2012-02-15",
        "description": "x" * 5000,
        "industryIdentifiers": [
            {"type": "ISBN_13", "identifier": "9780547951942"},
            {"type": "ISBN_10", "identifier": "0547951949"},
            {"type": "OTHER", "identifier": "UOM:39015054064466"},
        ],
        "pageCount": 1216,
        "printType": "BOOK",
        "language": "en",
    },
    "saleInfo": {"country": "US", "saleability": "FOR_SALE", "isEbook": True},
    "searchInfo": {"textSnippet": "One Ring to rule them all"},
}
PER_DAY = (
    "Quota exceeded for quota metric 'Queries' and limit 'Queries per day' of service "
    "'books.googleapis.com' for consumer 'project_number:000000000000'."
)
PER_MINUTE = PER_DAY.replace("Queries per day", "Queries per minute per user")


def google_error(code: int, message: str) -> dict[str, Any]:
    reason = "rateLimitExceeded"
    errors = [{"message": message, "domain": "usageLimits", "reason": reason}]
    return {"error": {"code": code, "message": message, "errors": errors, "status": "X"}}


def canned_settings(server: CannedServer, url: str, **overrides: Any) -> Settings:
    return load_settings(
        database_url=url,
        openlibrary_base_url=server.url,
        google_books_base_url=server.url,
        **{**FAST, **overrides},
    )


def test_open_library_search_sends_the_documented_parameters_and_reads_works(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned({"start": 0, "num_found": 1, "docs": [OL_DOC, {"key": "/works/x"}]}))
    client = OpenLibraryClient(canned_settings(canned, committed_db))
    (hit,) = client.search("The Lord of the Rings", "Tolkien", limit=5)
    assert hit == Hit(
        source="openlibrary",
        title="The Lord of the Rings: The Fellowship of the Ring",
        authors=("J. R. R. Tolkien",),
        date="1954",
        isbns=("9780261102354", "9780618640157"),
        edition_level=False,
        binding=None,
        language="eng",
        key="/works/OL27448W",
        record=hit.record,
    )
    assert hit.record["key"] == "/works/OL27448W"
    (seen,) = canned.seen
    assert (seen.method, seen.path) == ("GET", "/search.json")
    assert seen.args == {
        "title": ["The Lord of the Rings"],
        "author": ["Tolkien"],
        "fields": ["key,title,subtitle,author_name,first_publish_year,isbn,publish_date,language"],
        "limit": ["5"],
    }
    assert seen.headers["User-Agent"] == USER_AGENT
    assert ledger_calls(committed_db)["openlibrary"] == client.calls == 1


def test_open_library_without_author_and_with_a_contact(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned({"start": 0, "num_found": 0, "docs": []}))
    settings = canned_settings(canned, committed_db, openlibrary_contact="ops@example.org")
    client = OpenLibraryClient(settings, http=requests.Session())
    assert client.search("Dune", None) == []
    (seen,) = canned.seen
    assert "author" not in seen.args
    assert seen.headers["User-Agent"] == f"{USER_AGENT} (ops@example.org)"
    assert not seen.headers["User-Agent"].startswith("python-requests")
    assert load_settings(openlibrary_contact="ops@example.org").openlibrary_rate_per_second == 3
    assert load_settings().openlibrary_rate_per_second == 1


def test_open_library_html_429_is_retried_then_a_provider_error(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    page = "<html><head><title>429 Too Many Requests</title></head></html>"
    canned.queue(Canned(page, 429, {"Content-Type": "text/html"}))
    settings = canned_settings(canned, committed_db, provider_max_tries=2)
    client = OpenLibraryClient(settings)
    client.rate_limit_min_wait = 0.0  # the real one waits out Open Library's second
    with pytest.raises(ProviderError, match=r"HTTP 429.* after 2 tries"):
        client.search("Dune", "Herbert")
    assert len(canned.seen) == ledger_calls(committed_db)["openlibrary"] == 2
    canned.queue(Canned({"start": 0}))
    with pytest.raises(ProviderError, match='malformed answer: no "docs" list'):
        client.search("Dune", "Herbert")


def test_google_books_search_sends_the_documented_query_and_reads_editions(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned({"kind": "books#volumes", "totalItems": 1, "items": [GB_VOLUME]}))
    settings = canned_settings(canned, committed_db, google_books_api_key="gb-secret-key")
    client = GoogleBooksClient(settings)
    (hit,) = client.search('The "Lord" of the Rings', "J.R.R. Tolkien", limit=99)
    assert hit == Hit(
        source="googlebooks",
        title="The Lord of the Rings: One Volume",
        authors=("J.R.R. Tolkien",),
        date="2012-02-15",
        isbns=("9780547951942",),
        edition_level=True,
        binding="ebook",
        language="en",
        key="yl4dILkcqm4C",
        record=hit.record,
    )
    assert "description" not in hit.record["volumeInfo"] and "searchInfo" not in hit.record
    (seen,) = canned.seen
    assert seen.path == "/books/v1/volumes"
    assert seen.args == {
        "q": ['intitle:"The Lord of the Rings" inauthor:"J.R.R. Tolkien"'],
        "maxResults": ["40"],
        "printType": ["books"],
        "key": ["gb-secret-key"],
    }
    assert ledger_calls(committed_db)["googlebooks"] == client.calls == 1


def test_google_books_without_key_or_author_and_an_empty_answer(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned({"kind": "books#volumes", "totalItems": 0}))
    client = GoogleBooksClient(canned_settings(canned, committed_db))
    assert client.search("Nothing Like It", None, limit=3) == []
    (seen,) = canned.seen
    assert seen.args == {
        "q": ['intitle:"Nothing Like It"'],
        "maxResults": ["3"],
        "printType": ["books"],
    }


def test_google_books_query_is_form_encoded(committed_db: str) -> None:
    prepared = requests.Request(
        "GET", "http://x/books/v1/volumes", params={"q": 'intitle:"A B"'}
    ).prepare()
    assert urllib.parse.urlsplit(prepared.url).query == "q=intitle%3A%22A+B%22"


def test_google_books_day_quota_closes_the_day_but_not_the_months(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    from backfill import scheduler

    canned.queue(Canned(google_error(429, PER_DAY), 429))
    settings = canned_settings(canned, committed_db)
    client = GoogleBooksClient(settings)
    with pytest.raises(QuotaExhausted):
        client.search("Dune", "Herbert")
    with pytest.raises(QuotaExhausted):  # the ledger refuses now: no request
        client.search("Dune", "Herbert")
    assert len(canned.seen) == ledger_calls(committed_db)["googlebooks"] == 1
    with session_factory(committed_db)() as session:
        assert set(quota.blocked_providers(session, settings)) == {"googlebooks"}
        assert quota.daily_usage(session, settings)["googlebooks"]["exhausted"] is True
        # an optional resolver's day does not stop every month
        assert scheduler.blocked_until(session, settings) == {}


def test_google_books_rate_429_is_retried(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    ok = {"kind": "books#volumes", "totalItems": 1, "items": [GB_VOLUME]}
    canned.queue(Canned(google_error(429, PER_MINUTE), 429), Canned(ok))
    client = GoogleBooksClient(canned_settings(canned, committed_db))
    assert len(client.search("The Lord of the Rings", None)) == 1
    assert len(canned.seen) == ledger_calls(committed_db)["googlebooks"] == client.calls == 2


def test_isbndb_records_become_edition_hits(sandbox: Sandbox, committed_db: str) -> None:
    settings = load_settings(database_url=committed_db, **{**sandbox.settings_overrides(), **FAST})
    book = next(b for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    record = IsbndbClient(settings).book(book["isbn13"])
    assert record is not None
    hit = hit_of(record)
    assert (hit.source, hit.edition_level, hit.key) == ("isbndb", True, book["isbn13"])
    assert hit.isbns == (book["isbn13"],)
    assert hit.title == record.get("title_long") or record["title"]
    assert hit.binding == record.get("binding") and "synopsis" not in hit.record


def _serves(sandbox: Sandbox, path: str) -> bool:
    return requests.get(f"{sandbox.url}{path}", timeout=5).status_code != 404


def test_open_library_and_google_books_against_the_sandbox(
    sandbox: Sandbox, committed_db: str
) -> None:
    if not (_serves(sandbox, "/search.json") and _serves(sandbox, "/books/v1/volumes?q=x")):
        pytest.skip("the sandbox does not serve Open Library / Google Books yet")
    sandbox.reset()
    settings = load_settings(
        database_url=committed_db,
        openlibrary_base_url=sandbox.url,
        google_books_base_url=sandbox.url,
        openlibrary_contact="ops@example.org",
        **FAST,
    )
    book = next(b for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn")
    author = book["authors"][0] if book.get("authors") else None
    works = OpenLibraryClient(settings).search(book["title"], author)
    volumes = GoogleBooksClient(settings).search(book["title"], author)
    assert works and all(not w.edition_level for w in works)
    assert any(book["isbn13"] in w.isbns for w in works)
    assert volumes and all(v.edition_level and len(v.isbns) == 1 for v in volumes)
    assert any(v.isbns == (book["isbn13"],) for v in volumes)
    served = sandbox.stats()["calls"]
    ledger = ledger_calls(committed_db)
    assert ledger["openlibrary"] == served["openlibrary"] == 1
    assert ledger["googlebooks"] == served["googlebooks"] == 1


def test_a_shared_session_keeps_each_clients_user_agent(
    canned: CannedServer,  # noqa: F811
    committed_db: str,
) -> None:
    canned.queue(Canned({"start": 0, "num_found": 0, "docs": []}))
    settings = canned_settings(canned, committed_db, openlibrary_contact="ops@example.org")
    shared = requests.Session()
    GoogleBooksClient(settings, http=shared)  # sets the session's agent first
    OpenLibraryClient(settings, http=shared).search("Dune", None)
    assert canned.seen[0].headers["User-Agent"] == f"{USER_AGENT} (ops@example.org)"
