"""One month's work, independent of Celery: generate, validate and merge, resolve, store.

:func:`run_month` takes the caller's session and never commits. It updates the
caller's :class:`AttemptStats` as it goes, so calls already made are accounted
for even when it raises; books and lookups already stored are flushed, so the
caller can commit them on failure too and no API call is wasted on a retry.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill.config import Settings, get_settings
from backfill.dedupe import merge
from backfill.exceptions import ProviderError, ProviderRefused, QuotaExhausted
from backfill.models import Book
from backfill.providers import prompts
from backfill.providers.base import Generation, ProviderClient
from backfill.providers.gemini import GeminiClient
from backfill.providers.isbndb import IsbndbClient
from backfill.providers.xai import XaiClient
from backfill.resolve import Resolver

log = logging.getLogger(__name__)


@dataclass
class AttemptStats:
    """What one attempt at a month did and cost.

    * ``books_generated``: valid, distinct books the generators returned, after
      merging the two lists (fuzzy title + first author): a book with a valid
      ISBN or with none. A book whose only ISBN fails the checksum is a
      hallucination: counted in ``invalid_isbns``, never looked up, never kept
      (when the other generator gave the same book a valid ISBN, that one wins).
    * ``isbns_resolved``: distinct ISBN-13s those books resolved to (ISBNdb by
      ISBN or title search, or already in the catalog).
    * ``*_calls``: HTTP requests actually sent, each reserved in the quota ledger.
    """

    gemini_calls: int = 0
    xai_calls: int = 0
    isbndb_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    books_generated: int = 0
    isbns_resolved: int = 0
    invalid_isbns: int = 0
    model: str | None = None
    prompt_version: str | None = None

    @property
    def resolution_rate(self) -> float:
        """isbns_resolved / books_generated * 100 (0 when nothing was generated)."""
        if not self.books_generated:
            return 0.0
        return round(100.0 * self.isbns_resolved / self.books_generated, 2)


def run_month(
    session: Session,
    *,
    year: int,
    month: int,
    prompt_variant: str,
    batch_size: int,
    stats: AttemptStats,
    settings: Settings | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> AttemptStats:
    """Generate, resolve and store one month's books; returns ``stats`` (mutated).

    Raises ProviderError when neither generator produced a usable list (a
    ProviderRefused when both refused for good), QuotaExhausted when every
    generator's or ISBNdb's day budget is spent, ProviderError when ISBNdb fails.
    """
    settings = settings or get_settings()
    beat = heartbeat or (lambda: None)
    stats.prompt_version = prompts.prompt_version(prompt_variant)

    generations = generate(year, month, prompt_variant, batch_size, stats, settings)
    beat()

    merged = merge(generations, settings.dedupe_threshold)
    candidates = [c for c in merged if not c.invalid_isbn]
    stats.books_generated = len(candidates)
    stats.invalid_isbns = len(merged) - len(candidates)

    def count_calls(n: int) -> None:
        stats.isbndb_calls += n

    def count_resolved(n: int) -> None:
        stats.isbns_resolved = n

    client = IsbndbClient(settings)
    try:
        resolution = Resolver(
            session,
            client,
            settings,
            year=year,
            month=month,
            on_calls=count_calls,
            on_resolved=count_resolved,
            heartbeat=beat,
        ).run(candidates)
    finally:
        client.close()
    _count_kept_books(session, year, month, set(resolution.books), stats)
    log.info(
        "%04d-%02d: %d books generated, %d resolved, %d invalid ISBNs, %d ISBNdb calls",
        year,
        month,
        stats.books_generated,
        stats.isbns_resolved,
        stats.invalid_isbns,
        stats.isbndb_calls,
    )
    return stats


def _count_kept_books(
    session: Session, year: int, month: int, resolved: set[str], stats: AttemptStats
) -> None:
    """Books an earlier attempt at this month generated and stored (work kept so
    no call is paid twice) but this attempt's lists did not name again still
    belong to the month: count them as generated and resolved, so the month's
    counters always match the books stored under it."""
    stored = session.scalars(
        select(Book.isbn13).where(Book.found_year == year, Book.found_month == month)
    ).all()
    kept = set(stored) - resolved
    stats.books_generated += len(kept)
    stats.isbns_resolved += len(kept)


def generate(
    year: int,
    month: int,
    prompt_variant: str,
    batch_size: int,
    stats: AttemptStats,
    settings: Settings,
) -> list[Generation]:
    """Ask Gemini and (unless turned off) xAI at the same time; keep every usable list.

    One generator failing, refusing or out of quota does not block the month.
    """
    clients: list[GeminiClient | XaiClient] = [GeminiClient(settings)]
    if settings.xai_enabled:
        clients.append(XaiClient(settings))
    results: list[Generation] = []
    errors: list[ProviderError | QuotaExhausted] = []
    try:
        with ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="generate") as pool:
            futures = [
                # each in a copy of this context: quota.charging() must reach the threads
                pool.submit(
                    contextvars.copy_context().run,
                    c.generate,
                    year,
                    month,
                    prompt_variant,
                    batch_size,
                )
                for c in clients
            ]
        for client, future in zip(clients, futures, strict=True):
            _count_calls(stats, client)
            try:
                results.append(future.result())
            except (ProviderError, QuotaExhausted) as exc:
                log.warning("%04d-%02d: %s", year, month, exc)
                errors.append(exc)
    finally:
        for client in clients:
            client.close()
    if not results:
        raise _no_list(errors)
    stats.tokens_in += sum(g.tokens_in for g in results)
    stats.tokens_out += sum(g.tokens_out for g in results)
    stats.model = "+".join(g.model for g in results)
    return results


def _count_calls(stats: AttemptStats, client: ProviderClient) -> None:
    if client.name == "gemini":
        stats.gemini_calls += client.calls
    elif client.name == "xai":
        stats.xai_calls += client.calls


def _no_list(errors: list[ProviderError | QuotaExhausted]) -> Exception:
    """The error for a month no generator could serve."""
    names = "+".join(e.provider for e in errors)
    detail = "; ".join(str(e) for e in errors)
    quota = [e for e in errors if isinstance(e, QuotaExhausted)]
    if len(quota) == len(errors):
        # Nothing can run before the first budget comes back.
        resets_at = min((e.resets_at for e in quota), default=dt.datetime.now(dt.UTC))
        return QuotaExhausted(names, resets_at, detail)
    if all(isinstance(e, ProviderRefused) for e in errors):
        return ProviderRefused(names, f"no generator answered: {detail}")
    return ProviderError(names, f"no generator produced a usable list: {detail}")
