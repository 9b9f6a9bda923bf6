"""Helpers shared by the provider, pipeline and rate tests.

Those tests run against the sandbox over real HTTP and the real PostgreSQL
ledger (``committed_db``: reserve() commits on its own connections).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from backfill.config import Settings, load_settings
from backfill.db import get_engine
from backfill.dedupe import valid_isbn13
from tests.support.sandbox_fixture import Sandbox

FAST = {
    # Generous limits so tests do not wait on windows (the rate tests set their own).
    "isbndb_rate_per_second": 1000,
    "gemini_rate_per_minute": 0,
    "xai_rate_per_minute": 0,
    "http_timeout_seconds": 3.0,
    # In-attempt retries without the production waits (each try still reserved).
    "provider_retry_backoff_seconds": 0.01,
    "provider_retry_backoff_max_seconds": 0.05,
    "openlibrary_rate_per_second": 1000,
    "google_books_rate_per_minute": 0,
}


def make_settings(sandbox: Sandbox, url: str, **overrides: Any) -> Settings:
    """Settings pointing every client at the sandbox and the test database."""
    return load_settings(database_url=url, **{**sandbox.settings_overrides(), **FAST, **overrides})


def ledger_calls(url: str) -> dict[str, int]:
    """Calls reserved today per provider in the quota ledger (all day rows)."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text("SELECT provider, sum(calls) FROM quota_usage WHERE \"window\" = 'day' GROUP BY 1")
        ).all()
    return {provider: 0 for provider in ("gemini", "xai", "isbndb")} | {
        provider: int(total) for provider, total in rows
    }


def assert_ledger_matches(sandbox: Sandbox, url: str) -> dict[str, int]:
    """The ledger holds exactly the calls the sandbox received, per provider."""
    counted = sandbox.stats()["calls"]
    ledger = ledger_calls(url)
    assert ledger == {p: counted[p] for p in ledger}, (ledger, counted)
    return ledger


def in_scope(truth: dict[str, Any], batch_size: int) -> list[dict[str, Any]]:
    """The truth's books that either generator lists within its first ``batch_size``."""
    return [
        book
        for book in truth["books"]
        if any(rank is not None and rank < batch_size for rank in book["rank"].values())
    ]


def stated_isbns(book: dict[str, Any], batch_size: int) -> list[str]:
    """What the generators that list ``book`` quote as its ISBN (raw)."""
    return [
        str(answer["isbn13"])
        for provider, answer in book["answers"].items()
        if answer
        and answer.get("isbn13")
        and book["rank"][provider] is not None
        and book["rank"][provider] < batch_size
    ]


def valid_stated(book: dict[str, Any], batch_size: int) -> set[str]:
    """The valid ISBN-13s the generators quote for ``book``."""
    return {i for i in map(valid_isbn13, stated_isbns(book, batch_size)) if i}


def hallucinated(book: dict[str, Any], batch_size: int) -> bool:
    """Whether every generator that lists ``book`` quotes an ISBN failing its
    checksum: the pipeline counts such a book and drops it."""
    listed = [
        answer
        for provider, answer in book["answers"].items()
        if answer and book["rank"][provider] is not None and book["rank"][provider] < batch_size
    ]
    return bool(listed) and all(
        answer.get("isbn13") and not valid_isbn13(str(answer["isbn13"])) for answer in listed
    )


def kept(truth: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """The in-scope books the pipeline keeps (hallucinations left out)."""
    return [book for book in truth if not hallucinated(book, batch_size)]
