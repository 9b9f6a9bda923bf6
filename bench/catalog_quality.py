"""Catalogue quality ("The right book or none"): the resolution chain vs ISBNdb alone.

Precision, recall, and requests per resolved book (ISBNdb above all) of the
resolution chain, against ISBNdb alone (the baseline, measured in the same run).

    python -m bench.catalog_quality [--concurrency 4] [--timeout 600]

The scenario of tests/system/reliability/test_catalogue_quality.py, twice: 12 months
(2023-01..2023-12, batch 20) through a real ``celery -A backfill worker`` against
the sandbox (its own process) with its trap books at the head of both
generators' lists, 15% server errors on every API, ISBNdb held at 3/s and Open
Library (identified) at 3/s on the sandbox's side, the client set to the same
rates, OPENLIBRARY_CONTACT set, Basic plan bulk size (100), bulk on.

* chain: the default ``RESOLVERS`` (Open Library, Google Books, ISBNdb) with
  ``VERIFY_WITH_ISBNDB=when-needed``;
* baseline: ``RESOLVERS=isbndb`` and ``VERIFY_WITH_ISBNDB=required`` -- ISBNdb
  alone, as the original system resolved.

Each from an empty database, the sandbox reset and configured the same way
(same seed). Graded with the sandbox's ground truth: precision = stored ISBNs
that are the right ISBN of a findable book / stored; recall = right ISBNs stored
/ findable in-scope books (books every listing generator gave a made-up ISBN
for left out), as the test computes it. Requests are counted by the sandbox.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench._common import Figure, fmt, log, report, throwaway_database, throwaway_queue
from bench._sandbox import Sandbox, error_rates, grade, sandbox_process
from bench._workers import WORKER_ENV, Worker, dispatch_year, wait_settled

YEAR = 2023
MONTHS = [(YEAR, m) for m in range(1, 13)]
BATCH = 20  # what seeded months ask for
RESOLVERS = ("openlibrary", "googlebooks", "isbndb")
SANDBOX = {
    "seed": 20231,
    "trap_placement": "head",
    "isbndb_rate_per_second": 3,
    "openlibrary_rate_identified": 3,
    "openlibrary_rate_anonymous": 1,
}
CLIENT = {
    "ISBNDB_PLAN": "basic",
    "ISBNDB_RATE_PER_SECOND": "3",
    "ISBNDB_BULK_ENABLED": "true",
    "ISBNDB_BULK_SIZE": "100",
    "ISBNDB_DAILY_LIMIT": "100000",
    "OPENLIBRARY_RATE_PER_SECOND": "3",
    "BACKFILL_BATCH_SIZE": str(BATCH),
}
CHAIN = "chain"
BASE = "ISBNdb only"
MODES = {
    CHAIN: {"RESOLVERS": ",".join(RESOLVERS), "VERIFY_WITH_ISBNDB": "when-needed"},
    BASE: {"RESOLVERS": "isbndb", "VERIFY_WITH_ISBNDB": "required"},
}
SEARCH = "isbndb:GET /books/{query}"
BULK = "isbndb:POST /books"
SRCH = "searches"
OL, GB = "openlibrary", "googlebooks"


def stored_books(url: str) -> dict[str, tuple[int | None, int | None]]:
    """Every stored book: ISBN-13 -> (found_year, found_month)."""
    from sqlalchemy import text

    from backfill.db import get_engine

    with get_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT isbn13, found_year, found_month FROM books")).all()
    return {r.isbn13: (r.found_year, r.found_month) for r in rows}


def run_mode(
    sandbox: Sandbox, queue: str, tmp: Path, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    """The 12 months through a fresh worker and database with ``name``'s resolver settings."""
    label = "chain" if name == CHAIN else "isbndbonly"
    with throwaway_database(f"quality_{label}") as url:
        sandbox.reset()
        sandbox.configure(**SANDBOX, error_rate=error_rates(sandbox, args.error_rate))
        env = {**sandbox.env(), **WORKER_ENV, **CLIENT, **MODES[name]}
        with Worker("backfill", queue, tmp / f"{label}.log", args.concurrency, env):
            published = dispatch_year(url, YEAR)
            statuses, seconds = wait_settled(url, args.timeout)
        stats = sandbox.stats()
        graded = grade(sandbox, stored_books(url), MONTHS, BATCH)
    endpoints = stats["by_endpoint"]
    return {
        **graded,
        "published": published,
        "statuses": statuses,
        "seconds": round(seconds, 1),
        "requests": {p: int(stats["calls"].get(p, 0)) for p in RESOLVERS},
        SRCH: int(endpoints.get(SEARCH, 0)),
        "bulk": int(endpoints.get(BULK, 0)),
        "isbndb_endpoints": {k: v for k, v in endpoints.items() if k.startswith("isbndb")},
        "429s": {p: int(stats["by_status"].get(p, {}).get("429", 0)) for p in RESOLVERS},
        "5xx": {
            p: sum(int(n) for code, n in stats["by_status"].get(p, {}).items() if code >= "500")
            for p in RESOLVERS
        },
        "generate_requests": {p: int(stats["calls"].get(p, 0)) for p in ("gemini", "xai")},
    }


def per_book(result: dict[str, Any], count: float) -> float:
    """``count`` per resolved (stored) book."""
    return count / result["stored"] if result["stored"] else float("nan")


def figures(chain: dict[str, Any], base: dict[str, Any]) -> list[Figure]:
    """The chain's figures, each against ISBNdb alone."""

    def requests(metric: str, c: int, b: int, api: str = "") -> Figure:
        errors = f"; 5xx answers {chain['5xx'][api]} (baseline {base['5xx'][api]})" if api else ""
        return Figure(
            metric,
            per_book(chain, c),
            "req/book",
            BASE,
            per_book(base, b),
            f"{c} requests / {chain['stored']} books (baseline {b} / {base['stored']}){errors}",
        )

    cr, br = chain["requests"], base["requests"]
    return [
        Figure(
            "precision (right ISBNs stored / stored)",
            chain["precision"],
            "",
            BASE,
            base["precision"],
            f"{chain['right']}/{chain['stored']} (baseline {base['right']}/{base['stored']});"
            f" wrong by role: {chain['wrong_roles'] or 0} (baseline {base['wrong_roles'] or 0})",
        ),
        Figure(
            "recall (right ISBNs stored / findable in-scope books)",
            chain["recall"],
            "",
            BASE,
            base["recall"],
            f"{chain['found']}/{chain['findable']} (baseline {base['found']}/{base['findable']})",
        ),
        requests("ISBNdb requests per resolved book", cr["isbndb"], br["isbndb"], "isbndb"),
        requests("ISBNdb title searches (GET /books/{query}) per book", chain[SRCH], base[SRCH]),
        requests("ISBNdb bulk lookups (POST /books) per book", chain["bulk"], base["bulk"]),
        requests("Open Library requests per book", cr[OL], br[OL], OL),
        requests("Google Books requests per book", cr[GB], br[GB], GB),
        requests("resolver requests (all three) per book", sum(cr.values()), sum(br.values())),
        *(
            Figure(
                f"429s from {resolver}",
                chain["429s"][resolver],
                "",
                BASE,
                base["429s"][resolver],
                "sandbox limit 3/s = client rate",
            )
            for resolver in ("isbndb", "openlibrary")
        ),
        Figure(
            "months completed (of 12)",
            chain["statuses"].get("completed", 0),
            "",
            BASE,
            base["statuses"].get("completed", 0),
            f"{chain['seconds']} s (baseline {base['seconds']} s);"
            f" right ISBNs filed under another month: {chain['misfiled']}"
            f" (baseline {base['misfiled']})",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both modes and print the chain's figures against ISBNdb alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes (-c)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mode")
    parser.add_argument("--error-rate", type=float, default=0.15, help="5xx rate, every API")
    args = parser.parse_args(argv)

    results: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        throwaway_queue("quality") as queue,
        sandbox_process(SANDBOX) as sandbox,
    ):
        for name in (CHAIN, BASE):
            results[name] = run_mode(sandbox, queue, Path(tmp_dir), name, args)
            r = results[name]
            log(
                f"{name}: {r['statuses']} in {r['seconds']} s; precision {fmt(r['precision'])},"
                f" recall {fmt(r['recall'])}, requests {r['requests']}"
            )
    report(
        "catalog-quality",
        figures(results[CHAIN], results[BASE]),
        {"months": f"{YEAR}-01..{YEAR}-12", "sandbox": SANDBOX, "client": CLIENT, **results},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
