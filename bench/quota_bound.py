"""Benchmark 5: a quota-bound run -- wall time vs (calls / allowed rate); the budget
is used fully and never exceeded.

    python -m bench.quota_bound [--rate 2] [--daily 40] [--processes 4] [--threads 4]

ISBNdb is allowed ``--rate`` calls per second and ``--daily`` calls per day, both
in the ledger (ISBNDB_RATE_PER_SECOND, ISBNDB_DAILY_LIMIT) and in the sandbox,
which answers 429 above either. ``processes x threads`` reservers, each with its
own ``IsbndbClient``, look books up as fast as the ledger lets them until it says
the day's budget is spent. The baseline is the ideal wall time, daily / rate.
Checks: ledger = sandbox = calls granted = the daily limit; no 429; the busiest
wall-clock second saw at most ``--rate`` requests.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import threading
import time
from typing import Any

from bench._common import Figure, log, report, set_env, throwaway_database
from bench._sandbox import sandbox_process


def reserver_process(isbns: list[str], threads: int, ready: Any, go: Any, out: Any) -> None:
    """Start ``threads`` reservers; each looks books up until the day's budget is spent."""
    from backfill.config import get_settings
    from backfill.exceptions import QuotaExhausted
    from backfill.providers.isbndb import IsbndbClient

    settings = get_settings()
    grants: list[float] = []
    lock = threading.Lock()

    def run(offset: int) -> None:
        client = IsbndbClient(settings)
        try:
            i = offset
            while True:
                try:
                    client.book(isbns[i % len(isbns)])
                except QuotaExhausted:
                    return
                with lock:
                    grants.append(time.time())
                i += 1
        finally:
            client.close()

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    ready.put(1)
    go.wait(60)
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put({"grants": grants, "finished": time.time()})


def ledger_day_calls(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        total = conn.execute(
            text(
                "SELECT coalesce(sum(calls), 0) FROM quota_usage"
                " WHERE provider = 'isbndb' AND \"window\" = 'day'"
            )
        ).scalar_one()
    engine.dispose()
    return int(total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=2)
    parser.add_argument("--daily", type=int, default=40)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    limits = {"isbndb_rate_per_second": args.rate, "isbndb_daily_limit": args.daily}

    with throwaway_database("quota") as url, sandbox_process(limits) as sandbox:
        set_env(
            **sandbox.env(),
            ISBNDB_RATE_PER_SECOND=args.rate,
            ISBNDB_DAILY_LIMIT=args.daily,
        )
        isbns = [b["isbn13"] for b in sandbox.truth(2024, 5)["books"] if b["kind"] == "isbn"]
        ctx = mp.get_context("spawn")
        ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [
            ctx.Process(target=reserver_process, args=(isbns, args.threads, ready, go, out))
            for _ in range(args.processes)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        start = time.time()
        go.set()
        answers = [out.get(timeout=args.daily / args.rate * 3 + 30) for _ in procs]
        for p in procs:
            p.join(10)
        grants = sorted(t for a in answers for t in a["grants"])
        done = max(a["finished"] for a in answers)
        stats = sandbox.stats()
        ledger = ledger_day_calls(url)

    wall = done - start
    ideal = args.daily / args.rate
    statuses = stats["by_status"].get("isbndb", {})
    checks = {
        "granted": len(grants),
        "ledger": ledger,
        "sandbox_calls": stats["calls"]["isbndb"],
        "sandbox_200": int(statuses.get("200", 0)),
        "429s": int(statuses.get("429", 0)),
        "busiest_second": stats["max_isbndb_per_second"],
        "last_grant_s": round(grants[-1] - start, 2) if grants else None,
        "reservers": args.processes * args.threads,
    }
    ok = (
        checks["granted"] == checks["ledger"] == checks["sandbox_calls"] == args.daily
        and checks["429s"] == 0
        and checks["busiest_second"] <= args.rate
    )
    log(f"checks: {checks} -> {'OK' if ok else 'FAILED'}")
    reservers = args.processes * args.threads
    figures = [
        Figure(
            f"quota-bound wall time, {args.daily} calls at {args.rate}/s, {reservers} reservers",
            wall,
            "s",
            "daily / rate",
            ideal,
            f"last grant at {checks['last_grant_s']}s",
        ),
        Figure(
            "budget used (granted = ledger = sandbox)",
            checks["granted"],
            "calls",
            "daily limit",
            args.daily,
            f"ledger {ledger}, sandbox {checks['sandbox_calls']}; {'OK' if ok else 'MISMATCH'}",
        ),
        Figure(
            "busiest wall-clock second at the API",
            checks["busiest_second"],
            "calls",
            "allowed rate",
            args.rate,
            f"{checks['429s']} x 429",
        ),
    ]
    report("quota-bound", figures, {"checks": checks})
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
