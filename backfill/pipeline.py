"""One month's work, independent of Celery: generate once, merge, resolve, count.

:func:`generate_and_resolve` takes the caller's session. Paid work is never lost:

* a generator's answer is stored (raw list and merged candidates) and
  ``checkpoint()`` -- the caller's commit -- runs right after, so a later error
  cannot roll it back; a later attempt finds it and never asks that generator
  again for the month (a generator that failed may be asked again);
* every resolution answer is kept as it arrives (see :mod:`backfill.resolve`);
* the month's counters are counted from its candidates, so they always add up.

It updates the caller's :class:`AttemptStats` as it goes, so calls already made
are accounted for even when it raises.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from backfill import candidates
from backfill.attempts import AttemptStats
from backfill.config import Settings, get_settings
from backfill.dedupe import store_answer
from backfill.exceptions import ProviderError, ProviderRefused, QuotaExhausted
from backfill.months import get as get_month
from backfill.providers import prompts
from backfill.providers.base import Generation
from backfill.providers.gemini import GeminiClient
from backfill.providers.xai import XaiClient
from backfill.resolve import Clients, Resolver

log = logging.getLogger(__name__)

__all__ = ["AttemptStats", "generate", "generate_and_resolve"]


def generate_and_resolve(
    session: Session,
    *,
    year: int,
    month: int,
    prompt_variant: str,
    batch_size: int,
    stats: AttemptStats,
    settings: Settings | None = None,
    renew_lease: Callable[[], None] | None = None,
    checkpoint: Callable[[], None] | None = None,
    attempt_id: int | None = None,
) -> AttemptStats:
    """Generate (what is not stored yet), resolve and count one month; returns ``stats``.

    Raises ProviderError when no generator's list is stored and none could be
    had now (a ProviderRefused when both refused for good), QuotaExhausted when
    every missing generator's budget is spent or ISBNdb's ran out with books
    still waiting for it, ProviderError when ISBNdb stays down.
    """
    settings = settings or get_settings()
    renew = renew_lease or (lambda: None)
    keep = checkpoint or session.flush
    stats.prompt_version = prompts.prompt_version(prompt_variant)
    backfill_id = get_month(session, year, month).id

    stored = candidates.current_generations(session, backfill_id)
    names = ["gemini", "xai"] if settings.xai_enabled else ["gemini"]
    missing = [name for name in names if name not in stored]
    stats.generators_reused = len(names) - len(missing)
    # The models behind the answers this attempt works from, reused ones included.
    stats.model = "+".join(stored[name].model or name for name in names if name in stored) or None
    if missing:
        answers, errors = generate(
            missing, year, month, prompt_variant, batch_size, stats, settings
        )
        for answer in answers:
            store_answer(session, backfill_id, attempt_id, answer, batch_size)
            keep()  # the answer is kept with the calls it charged
        if not answers and not stored:
            raise _no_list(errors)
    renew()

    pending = candidates.of_month(session, backfill_id, ("pending",))
    clients = Clients.open(settings)
    try:
        Resolver(
            session, settings, clients, year=year, month=month, checkpoint=keep, renew_lease=renew
        ).run(pending)
    finally:
        for client in (clients.isbndb, clients.openlibrary, clients.googlebooks):
            stats.count(client)
        clients.close()
        _count_books(session, backfill_id, stats)
    log.info(
        "%04d-%02d: %d books generated, %d resolved, %d unresolved, %d invalid ISBNs,"
        " ISBNdb calls %d, generators reused %d",
        year,
        month,
        stats.books_generated,
        stats.isbns_resolved,
        stats.unresolved,
        stats.invalid_isbns,
        stats.isbndb_calls,
        stats.generators_reused,
    )
    return stats


def _count_books(session: Session, backfill_id: int, stats: AttemptStats) -> None:
    try:
        counted = candidates.counts(session, backfill_id)
    except Exception:  # the session may be unusable after a database error
        return
    stats.books_generated = counted.books_generated
    stats.isbns_resolved = counted.isbns_resolved
    stats.invalid_isbns = counted.invalid_isbns
    stats.unresolved = counted.unresolved


def generate(
    names: list[str],
    year: int,
    month: int,
    prompt_variant: str,
    batch_size: int,
    stats: AttemptStats,
    settings: Settings,
) -> tuple[list[Generation], list[ProviderError | QuotaExhausted]]:
    """Ask the generators ``names`` at the same time; every usable list, and the errors.

    One generator failing, refusing, out of quota or answering in an odd shape
    does not block the month. Each list is capped at ``batch_size``.
    """
    kinds: dict[str, type[GeminiClient] | type[XaiClient]] = {
        "gemini": GeminiClient,
        "xai": XaiClient,
    }
    clients = [kinds[name](settings) for name in names]
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
            stats.count(client)
            try:
                answer = future.result()
                answer.books = answer.books[:batch_size]
                results.append(answer)
            except (ProviderError, QuotaExhausted) as exc:
                log.warning("%04d-%02d: %s", year, month, exc)
                errors.append(exc)
            except DBAPIError:
                raise  # the database, not the generator: the runner defers, spends nothing
            except Exception as exc:  # an answer shape no parser foresaw: that generator only
                log.warning("%04d-%02d: %s answered oddly: %r", year, month, client.name, exc)
                errors.append(ProviderError(client.name, f"malformed answer: {exc!r}"[:300]))
    finally:
        for client in clients:
            client.close()
    stats.tokens_in += sum(g.tokens_in for g in results)
    stats.tokens_out += sum(g.tokens_out for g in results)
    if results:
        models = [m for m in (stats.model or "").split("+") if m]
        stats.model = "+".join(models + [g.model for g in results])
    return results, errors


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
