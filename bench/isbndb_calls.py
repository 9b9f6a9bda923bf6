"""Benchmark 4: ISBNdb calls per resolved book -- bulk on, bulk off, and the naive
one-lookup-per-book approach (the baseline, same run) -- and the 429s seen.

    python -m bench.isbndb_calls [--months 6] [--rate 20]

The real pipeline (``pipeline.generate_and_resolve``) runs over the same months against the
sandbox, once with ``ISBNDB_BULK_ENABLED`` on and once off, each from an empty
database; then once more with bulk on over the same months, warm (the lookup
cache and the books already stored). The naive approach asks ISBNdb about every
book of both generators' lists as given (no merge, no cache): ``GET /book/{isbn}``
when it quotes a valid ISBN, else -- or when that misses -- one title search,
taking the first edition found. Both sides reserve every call in the same
ledger at the same rate, which is also the sandbox's enforced rate, so any 429
would mean the ledger let through more than the API allows.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench._common import Figure, log, report, set_env, throwaway_database, truncate_all
from bench._sandbox import sandbox_process

FIRST_YEAR, FIRST_MONTH = 2023, 1
BATCH = 20
NAIVE = "naive (1 lookup per listed book)"


def months(n: int) -> list[tuple[int, int]]:
    key = FIRST_YEAR * 12 + FIRST_MONTH - 1
    return [((key + i) // 12, (key + i) % 12 + 1) for i in range(n)]


def run_pipeline(url: str, todo: list[tuple[int, int]], settings: Any) -> dict[str, int]:
    """The real pipeline over ``todo``, each month committed as the task does."""
    from backfill.db import session_factory
    from backfill.pipeline import AttemptStats, generate_and_resolve
    from backfill.providers import prompts
    from backfill.scheduler import seed_months

    with session_factory(url)() as session:  # generate_and_resolve works on seeded months only
        (y0, m0), (y1, m1) = todo[0], todo[-1]
        seed_months(session, y0, y1, start_month=m0, end_month=m1)
        session.commit()
    calls = resolved = generated = 0
    for year, month in todo:
        stats = AttemptStats()
        with session_factory(url)() as session:
            generate_and_resolve(
                session,
                year=year,
                month=month,
                prompt_variant=prompts.variant_for(year),
                batch_size=BATCH,
                stats=stats,
                settings=settings,
            )
            session.commit()
        calls += stats.isbndb_calls
        resolved += stats.isbns_resolved
        generated += stats.books_generated
    return {"calls": calls, "resolved": resolved, "generated": generated}


def run_naive(todo: list[tuple[int, int]], settings: Any) -> dict[str, int]:
    """One lookup per generated book, as the generators listed them."""
    from backfill.dedupe import valid_isbn13
    from backfill.pipeline import AttemptStats, generate
    from backfill.providers import prompts
    from backfill.providers.isbndb import IsbndbClient, isbn13_of

    client = IsbndbClient(settings)
    resolved_total = generated = 0
    try:
        for year, month in todo:
            lists, _failed = generate(
                ["gemini", "xai"], year, month, prompts.variant_for(year), BATCH,
                AttemptStats(), settings,
            )  # fmt: skip
            found: set[str] = set()
            for generation in lists:
                for book in generation.books:
                    generated += 1
                    isbn = valid_isbn13(book.isbn)
                    record = client.book(isbn) if isbn else None
                    if record is None:
                        editions = client.search_title(book.title)
                        record = editions[0] if editions else None
                    key = isbn13_of(record) if record else None
                    if key:
                        found.add(key)
            resolved_total += len(found)
        return {"calls": client.calls, "resolved": resolved_total, "generated": generated}
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--rate", type=int, default=20, help="ISBNdb calls/s (ledger = sandbox)")
    args = parser.parse_args(argv)
    todo = months(args.months)

    results: dict[str, dict[str, Any]] = {}
    with (
        throwaway_database("isbndb") as url,
        sandbox_process({"isbndb_rate_per_second": args.rate}) as sandbox,
    ):
        from backfill.config import get_settings

        set_env(
            **sandbox.env(),
            ISBNDB_RATE_PER_SECOND=args.rate,
            ISBNDB_DAILY_LIMIT=100_000,
            GEMINI_RATE_PER_MINUTE=0,
            XAI_RATE_PER_MINUTE=0,
            GEMINI_DAILY_LIMIT=100_000,
            XAI_DAILY_LIMIT=100_000,
        )
        base = get_settings()
        bulk_on = base.model_copy(update={"isbndb_bulk_enabled": True})
        bulk_off = base.model_copy(update={"isbndb_bulk_enabled": False})
        # (name, settings of the pipeline or None for the naive approach, start cold?)
        modes = [
            (NAIVE, None, True),
            ("pipeline, bulk on", bulk_on, True),
            ("pipeline, bulk off", bulk_off, True),
            ("pipeline, bulk on, warm cache", bulk_on, False),
        ]
        for name, settings, cold in modes:
            if cold:
                truncate_all(url)
            sandbox.reset()
            sandbox.configure(isbndb_rate_per_second=args.rate)
            counts: dict[str, Any] = (
                run_naive(todo, base) if settings is None else run_pipeline(url, todo, settings)
            )
            seen = sandbox.stats()
            isbndb_status = seen["by_status"].get("isbndb", {})
            counts = counts | {
                "sandbox_calls": seen["calls"]["isbndb"],
                "by_endpoint": {
                    k: v for k, v in seen["by_endpoint"].items() if k.startswith("isbndb")
                },
                "429s": int(isbndb_status.get("429", 0)),
                "max_per_second": seen.get("max_isbndb_per_second"),
            }
            results[name] = counts
            log(f"{name}: {counts}")

    naive = results[NAIVE]
    naive_per_book = naive["calls"] / naive["resolved"]
    figures = []
    for name, r in results.items():
        per_book = r["calls"] / r["resolved"] if r["resolved"] else 0.0
        figures.append(
            Figure(
                f"ISBNdb calls per resolved book, {name}",
                per_book,
                "calls/book",
                NAIVE if name != NAIVE else "",
                naive_per_book if name != NAIVE else None,
                f"{r['calls']} calls (sandbox saw {r['sandbox_calls']}), "
                f"{r['resolved']} resolved, {r['429s']} x 429, "
                f"peak {r['max_per_second']}/s",
            )
        )
    report(
        "isbndb-calls",
        figures,
        {"months": [f"{y}-{m:02d}" for y, m in todo], "rate": args.rate, "modes": results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
