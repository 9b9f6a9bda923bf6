"""One month end to end: sandbox over real HTTP, books and ledger in the real PostgreSQL.

The sandbox's ``truth`` says what a correct pipeline makes of a month, so the
expectations below are derived from it, never hard-coded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select, text

from backfill import quota
from backfill.config import Settings
from backfill.db import session_factory, transaction
from backfill.dedupe import valid_isbn13
from backfill.exceptions import ProviderError, ProviderRefused, QuotaExhausted
from backfill.models import Book, LookupCache
from backfill.pipeline import AttemptStats, generate_and_resolve
from backfill.providers import prompts
from backfill.providers.isbndb import MAX_RATE_LIMITED_TRIES
from backfill.scheduler import seed_months
from tests.conftest import truncate_all
from tests.support.pipeline_support import (
    assert_ledger_matches,
    hallucinated,
    in_scope,
    kept,
    make_settings,
    valid_stated,
)
from tests.support.sandbox_fixture import Sandbox

YEAR, MONTH, BATCH = 2024, 5, 20

Runner = Callable[..., AttemptStats]


@pytest.fixture
def settings(sandbox: Sandbox, committed_db: str) -> Settings:
    """Sandbox URLs and keys, the emptied test database, fast limits."""
    return make_settings(sandbox, committed_db)


@pytest.fixture
def run(settings: Settings, committed_db: str) -> Runner:
    """Run a month in its own transaction, committed even when it raises (as the task does)."""

    def run_it(
        year: int = YEAR, month: int = MONTH, batch_size: int = BATCH, **kwargs: Any
    ) -> AttemptStats:
        stats = kwargs.pop("stats", None) or AttemptStats()
        with session_factory(committed_db)() as session:
            seed_months(session, year, year, start_month=month, end_month=month)
            session.commit()
            try:
                generate_and_resolve(
                    session,
                    year=year,
                    month=month,
                    prompt_variant=prompts.variant_for(year),
                    batch_size=batch_size,
                    stats=stats,
                    settings=kwargs.pop("settings", settings),
                    **kwargs,
                )
            finally:
                session.commit()
        return stats

    return run_it


def stored(url: str) -> dict[str, Book]:
    with session_factory(url)() as session:
        return {book.isbn13: book for book in session.scalars(select(Book))}


def test_a_month_merges_both_lists_and_resolves_every_resolvable_book(
    run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    stats = run()
    scope = in_scope(sandbox.truth(YEAR, MONTH), BATCH)
    truth = kept(scope, BATCH)
    resolvable = [b for b in truth if b["findable"]]
    assert stats.books_generated == len(truth)  # merged: no book twice, no hallucination
    assert stats.invalid_isbns == len(scope) - len(truth) > 0
    assert stats.isbns_resolved == len(resolvable)
    assert stats.resolution_rate == round(100 * len(resolvable) / len(truth), 2)
    books = stored(committed_db)
    assert set(books) == {b["isbn13"] for b in resolvable}  # the right edition of each
    for book in resolvable:
        listed_by = {p for p, rank in book["rank"].items() if rank is not None and rank < BATCH}
        expected = "both" if len(listed_by) == 2 else listed_by.pop()
        row = books[book["isbn13"]]
        assert row.generator == expected
        assert (row.title, row.authors, row.found_year, row.found_month) == (
            book["title"],
            book["authors"],
            YEAR,
            MONTH,
        )
    assert (stats.gemini_calls, stats.xai_calls) == (1, 1)
    assert stats.tokens_in > 0 and stats.tokens_out > 0
    assert stats.prompt_version == prompts.prompt_version("contemporary-notable")
    assert stats.model == "gemini-2.5-flash+grok-3-mini"
    ledger = assert_ledger_matches(sandbox, committed_db)
    assert ledger["isbndb"] == stats.isbndb_calls
    assert sandbox.stats()["by_month"] == {"2024-05": {"gemini": 1, "xai": 1}}
    # every request is also counted by how it ended (the /metrics counter)
    with session_factory(committed_db)() as session:
        outcomes = session.execute(
            text("SELECT provider, outcome, calls FROM api_call_outcomes")
        ).all()
    by_provider: dict[str, int] = {}
    for provider, _, n in outcomes:
        by_provider[provider] = by_provider.get(provider, 0) + int(n)
    sent = {p: getattr(stats, f"{p}_calls") for p in ("isbndb", "openlibrary", "googlebooks")}
    assert by_provider == {"gemini": 1, "xai": 1, **{p: n for p, n in sent.items() if n}}
    assert stats.isbndb_calls <= 2  # the claims and the found ISBNs share bulk requests
    assert {o for _, o, _ in outcomes} <= {"ok", "not_found"}


def test_baseline_variant_for_an_old_month(run: Runner, sandbox: Sandbox) -> None:
    stats = run(1999, 3, 5)
    assert stats.prompt_version == prompts.prompt_version("baseline")
    assert sandbox.stats()["by_month"] == {"1999-03": {"gemini": 1, "xai": 1}}
    assert 5 <= stats.books_generated <= 10


@pytest.mark.parametrize("resolvers", ["openlibrary,googlebooks,isbndb", "isbndb"])
def test_title_search_keeps_the_earliest_print_edition_by_the_right_author(
    resolvers: str, run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    run(settings=make_settings(sandbox, committed_db, resolvers=resolvers))
    untitled = [b for b in in_scope(sandbox.truth(YEAR, MONTH), BATCH) if b["kind"] == "no_isbn"]
    assert untitled
    books = stored(committed_db)
    for book in untitled:
        bindings = {e["binding"] for e in book["editions"]}
        authors = {tuple(e["authors"]) for e in book["editions"]}
        assert "Kindle Edition" in bindings and len(authors) == 2  # a real choice was made
        row = books[book["isbn13"]]
        if resolvers == "isbndb":
            assert row.resolver == "isbndb:title"
            assert row.payload["record"]["binding"] in ("Hardcover", "Paperback")
        else:
            assert row.resolver in ("openlibrary", "googlebooks")
        assert row.payload["hit"]["binding"] not in (None, "Kindle Edition")
        assert row.publication_date == book["publication_date"]


def test_invalid_isbns_are_never_looked_up_nor_stored(
    run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    stats = run()
    bad = [b for b in in_scope(sandbox.truth(YEAR, MONTH), BATCH) if hallucinated(b, BATCH)]
    claimed = {a["isbn13"] for b in bad for a in b["answers"].values() if a and a["isbn13"]}
    assert bad and stats.invalid_isbns == len(bad)
    with session_factory(committed_db)() as session:
        keys = set(session.scalars(select(LookupCache.key)))
    assert not claimed & keys
    assert not claimed & set(stored(committed_db))
    # a hallucination is counted, not kept: no title search, no book row
    assert not {b["isbn13"] for b in bad} & set(stored(committed_db))


@pytest.mark.parametrize("bulk", [True, False])
def test_bulk_and_single_lookups_count_their_calls(
    bulk: bool, run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    settings = make_settings(
        sandbox, committed_db, isbndb_bulk_enabled=bulk, isbndb_bulk_size=5, resolvers="isbndb"
    )
    stats = run(settings=settings)
    truth = kept(in_scope(sandbox.truth(YEAR, MONTH), BATCH), BATCH)
    with_isbn = {isbn for b in truth for isbn in valid_stated(b, BATCH)}
    # title searches: no usable ISBN, or an ISBN ISBNdb does not know
    searched = sum(1 for b in truth if not valid_stated(b, BATCH) or b["kind"] == "unknown")
    endpoints = sandbox.stats()["by_endpoint"]
    if bulk:
        assert endpoints["isbndb:POST /books"] == math.ceil(len(with_isbn) / 5)
        assert "isbndb:GET /book/{isbn}" not in endpoints
    else:
        assert endpoints["isbndb:GET /book/{isbn}"] == len(with_isbn)
        assert "isbndb:POST /books" not in endpoints
    assert endpoints["isbndb:GET /books/{query}"] == searched
    assert stats.isbndb_calls == sum(v for k, v in endpoints.items() if k.startswith("isbndb"))
    assert stats.isbns_resolved == sum(1 for b in truth if b["findable"])
    assert_ledger_matches(sandbox, committed_db)


def test_generators_run_concurrently(run: Runner, sandbox: Sandbox, settings: Settings) -> None:
    """Each generator answers after LATENCY: asked one after the other, a month would
    take 2 x LATENCY longer than without it; asked together, one LATENCY. Measured
    against a month without latency in the same test, so a slow machine moves both."""
    patient = settings.model_copy(update={"http_timeout_seconds": 3 * LATENCY})
    started = time.monotonic()
    run(month=MONTH - 1, settings=patient)
    baseline = time.monotonic() - started
    sandbox.configure(latency_ms={"gemini": LATENCY * 1000, "xai": LATENCY * 1000})
    started = time.monotonic()
    stats = run(settings=patient)
    added = time.monotonic() - started - baseline
    assert (stats.gemini_calls, stats.xai_calls) == (1, 1)
    # concurrent: ~LATENCY added; sequential: >= 2 x LATENCY. Half a LATENCY either way.
    assert LATENCY * 0.5 <= added < LATENCY * 1.5, (added, baseline)


LATENCY = 3.0  # seconds


TRIES = 4  # PROVIDER_MAX_TRIES: a 5xx is tried again inside the attempt


@pytest.mark.parametrize(
    ("provider", "fault", "calls"),
    [
        ("gemini", {"fail_months": {"2024-05": {"gemini": TRIES, "status": 503}}}, TRIES),
        ("xai", {"fail_months": {"2024-05": {"xai": TRIES, "status": 500}}}, TRIES),
        ("gemini", {"quota_exhausted": {"gemini": True}}, 1),
        ("xai", {"malformed_rate": {"xai": 1.0}}, 1),
    ],
)
def test_one_generator_failing_does_not_block_the_month(
    provider: str,
    fault: dict[str, Any],
    calls: int,
    run: Runner,
    sandbox: Sandbox,
    committed_db: str,
) -> None:
    sandbox.configure(**fault)
    stats = run()
    other = "xai" if provider == "gemini" else "gemini"
    assert (getattr(stats, f"{provider}_calls"), getattr(stats, f"{other}_calls")) == (calls, 1)
    assert stats.isbns_resolved > 0
    assert {b.generator for b in stored(committed_db).values()} == {other}
    listed = [
        b["answers"][other]
        for b in sandbox.truth(YEAR, MONTH)["books"]
        if b["rank"][other] is not None and b["rank"][other] < BATCH
    ]
    made_up = [a for a in listed if a["isbn13"] and not valid_isbn13(str(a["isbn13"]))]
    assert stats.books_generated == len(listed) - len(made_up)
    assert stats.invalid_isbns == len(made_up)
    assert_ledger_matches(sandbox, committed_db)


def test_both_generators_failing_is_a_provider_error(
    run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    sandbox.configure(fail_months={"2024-05": {"gemini": TRIES, "xai": TRIES, "status": 503}})
    stats = AttemptStats()
    with pytest.raises(ProviderError, match="no generator produced a usable list"):
        run(stats=stats)
    assert (stats.gemini_calls, stats.xai_calls, stats.isbndb_calls) == (TRIES, TRIES, 0)
    assert stored(committed_db) == {}
    assert_ledger_matches(sandbox, committed_db)


def test_both_generators_out_of_quota_defers_until_the_first_reset(
    run: Runner, sandbox: Sandbox, settings: Settings
) -> None:
    sandbox.configure(quota_exhausted={"gemini": True, "xai": True})
    with pytest.raises(QuotaExhausted) as caught:
        run()
    assert caught.value.resets_at == quota.next_reset(settings)


def test_xai_can_be_turned_off(run: Runner, sandbox: Sandbox, committed_db: str) -> None:
    stats = run(settings=make_settings(sandbox, committed_db, xai_enabled=False))
    assert (stats.gemini_calls, stats.xai_calls) == (1, 0)
    assert sandbox.stats()["calls"]["xai"] == 0
    assert {b.generator for b in stored(committed_db).values()} == {"gemini"}


def test_a_month_run_twice_keeps_one_row_per_book_and_asks_nothing_new(
    run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    first = run()
    books_before = {
        isbn: (b.title, b.generator, b.resolver) for isbn, b in stored(committed_db).items()
    }
    calls_before = sandbox.stats()["calls"]["isbndb"]
    second = run()
    books_after = {
        isbn: (b.title, b.generator, b.resolver) for isbn, b in stored(committed_db).items()
    }
    assert books_after == books_before
    assert second.isbndb_calls == 0 and sandbox.stats()["calls"]["isbndb"] == calls_before
    counters = ("books_generated", "isbns_resolved", "invalid_isbns")
    assert [getattr(second, c) for c in counters] == [getattr(first, c) for c in counters]
    # Generated once: the second run resolves the stored candidates, asks no generator.
    assert (second.gemini_calls, second.xai_calls, second.generators_reused) == (0, 0, 2)
    assert sandbox.stats()["by_month"] == {"2024-05": {"gemini": 1, "xai": 1}}
    assert_ledger_matches(sandbox, committed_db)


@pytest.mark.parametrize("bulk", [True, False])
def test_work_done_before_the_isbndb_quota_ran_out_is_kept(
    bulk: bool, sandbox: Sandbox, engine: Any, committed_db: str, run: Runner
) -> None:
    settings = make_settings(
        sandbox, committed_db, isbndb_bulk_enabled=bulk, isbndb_bulk_size=5, resolvers="isbndb"
    )
    clean = run(settings=settings)
    truncate_all(engine)
    sandbox.reset()

    # Four ISBNdb requests pass (title searches, then bulk or single lookups); our
    # plan's limit is set near the API's, as an operator's is, so the persistent
    # "Limit Exceeded" that follows is read as the day's quota.
    sandbox.configure(isbndb_daily_limit=4)
    deferred = AttemptStats()
    with pytest.raises(QuotaExhausted):
        run(stats=deferred, settings=settings.model_copy(update={"isbndb_daily_limit": 14}))
    # four answered; then "Limit Exceeded", waited out as a rate limit twice
    # before it is taken for the day's quota
    assert deferred.isbndb_calls == 4 + MAX_RATE_LIMITED_TRIES
    assert 0 < deferred.isbns_resolved < clean.isbns_resolved
    assert len(stored(committed_db)) == deferred.isbns_resolved
    assert_ledger_matches(sandbox, committed_db)

    # The next day: nothing answered yesterday is asked again.
    with transaction(committed_db) as session:
        session.execute(text("DELETE FROM quota_usage"))
    sandbox.configure(isbndb_daily_limit=None)
    resumed = run(settings=settings)
    assert deferred.isbndb_calls - MAX_RATE_LIMITED_TRIES + resumed.isbndb_calls == (
        clean.isbndb_calls
    )
    assert resumed.isbns_resolved == clean.isbns_resolved
    assert len(stored(committed_db)) == clean.isbns_resolved


def test_isbndb_day_quota_answer_defers_the_month_and_blocks_isbndb(
    run: Runner, sandbox: Sandbox, settings: Settings, committed_db: str
) -> None:
    sandbox.configure(quota_exhausted={"isbndb": True})
    stats = AttemptStats()
    near = settings.model_copy(update={"isbndb_daily_limit": 5})  # see the test above
    with pytest.raises(QuotaExhausted) as caught:
        run(stats=stats, settings=near)
    assert caught.value.provider == "isbndb"
    assert stats.isbndb_calls == MAX_RATE_LIMITED_TRIES and stats.books_generated > 0
    with session_factory(committed_db)() as session:
        assert set(quota.blocked_providers(session, near)) == {"isbndb"}
    assert_ledger_matches(sandbox, committed_db)


def test_a_hanging_isbndb_fails_the_attempt_within_the_timeout(
    run: Runner, sandbox: Sandbox, committed_db: str
) -> None:
    settings = make_settings(sandbox, committed_db, http_timeout_seconds=0.5, provider_max_tries=2)
    run()  # the generators' answers are stored: the timed run is ISBNdb's alone
    sandbox.configure(timeout_rate={"isbndb": 1.0}, timeout_seconds=30)
    with transaction(committed_db) as session:
        session.execute(
            text("UPDATE candidates SET status = 'pending', isbn13 = NULL, resolver = NULL")
        )
        session.execute(text("DELETE FROM lookup_cache"))
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"isbndb: no answer within 0\.5s"):
        run(settings=settings)
    assert time.monotonic() - started < 2 * 0.5 + 1.5


def test_the_lease_is_renewed_between_phases(run: Runner) -> None:
    beats: list[float] = []
    run(renew_lease=lambda: beats.append(time.monotonic()))
    assert len(beats) >= 3


def test_generate_and_resolve_flushes_but_never_commits(
    settings: Settings, committed_db: str, sandbox: Sandbox
) -> None:
    with session_factory(committed_db)() as session:
        seed_months(session, YEAR, YEAR, start_month=MONTH, end_month=MONTH)
        stats = generate_and_resolve(
            session,
            year=YEAR,
            month=MONTH,
            prompt_variant="contemporary-notable",
            batch_size=5,
            stats=AttemptStats(),
            settings=settings,
        )
        inside = len(session.scalars(select(Book)).all())
        session.rollback()
    assert inside == stats.isbns_resolved > 0  # flushed inside the caller's transaction
    assert stored(committed_db) == {}  # and gone with its rollback: nothing was committed


def test_both_generators_refusing_our_keys_is_a_permanent_refusal(
    run: Runner, sandbox: Sandbox
) -> None:
    env = sandbox.env()
    sandbox.configure(reject_keys=[env["GEMINI_API_KEY"], env["XAI_API_KEY"]])
    with pytest.raises(ProviderRefused, match="no generator answered"):
        run()
