"""Generate once ("Keep every generated book and pay for it once"): generator requests per
month, now vs the code before that work (a git worktree of it, run in the same run).

    python -m bench.generate_once [--before 95985e3 | --before none] [--concurrency 4]

12 months (2024-01..2024-12) through a real ``celery -A backfill worker`` against
the sandbox (its own process) with 15% server errors on every API it knows, from
an empty database. Per month and generator (24 pairs): the generate requests that
reached the model (sandbox ``by_month``), the complete lists it delivered
(``answered_by_month``, where the sandbox has it) and, per month, the attempts
(``month_attempts`` rows) -- as min/median/max and "pairs asked more than once".

``--before REV`` (default 95985e3, the commit before the candidates work) then
runs this file again in ``git worktree add /tmp/backfill-before REV`` with this
``bench/`` copied in (``bench/_worktree.py``): that tree's worker, sandbox and
migrations, the same settings. What the old code lacks is reported
as n/a (no ``answered_by_month``, no ``generations`` table, no PROVIDER_MAX_TRIES).
The worktree is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._common import Figure, log, report, table, throwaway_database, throwaway_queue
from bench._sandbox import error_rates, sandbox_process
from bench._workers import WORKER_ENV, Worker, dispatch_year, wait_settled
from bench._worktree import revision, run_at

YEAR = 2024
LABELS = [f"{YEAR}-{m:02d}" for m in range(1, 13)]
GENERATORS = ("gemini", "xai")
CLIENT = {
    "ISBNDB_RATE_PER_SECOND": "50",
    "ISBNDB_DAILY_LIMIT": "100000",
    "OPENLIBRARY_RATE_PER_SECOND": "50",
    "BACKFILL_BATCH_SIZE": "20",
}


def month_rows(url: str) -> dict[str, dict[str, Any]]:
    """Per month: status, retry_count, attempts recorded, answers kept (if that table exists)."""
    from sqlalchemy import text

    from backfill.db import get_engine

    with get_engine(url).connect() as conn:
        kept = conn.execute(text("SELECT to_regclass('generations') IS NOT NULL")).scalar()
        answers = "(SELECT count(*) FROM generations g WHERE g.backfill_id = l.id)"
        rows = conn.execute(
            text(
                "SELECT l.year, l.month, l.status, l.retry_count,"
                " (SELECT count(*) FROM month_attempts a WHERE a.backfill_id = l.id) AS attempts,"
                f" {answers if kept else 'NULL'} AS kept FROM backfill_log l"
            )
        ).all()
    return {
        f"{r.year:04d}-{r.month:02d}": {
            "status": r.status,
            "retry_count": int(r.retry_count),
            "attempts": int(r.attempts),
            "answers_kept": None if r.kept is None else int(r.kept),
        }
        for r in rows
    }


def spread(values: list[int]) -> dict[str, Any]:
    """min / median / max, how many are above 1, and the total."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "more_than_once": sum(v > 1 for v in values),
        "of": len(values),
        "total": sum(values),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run of the 12 months on this tree's code; the figures as plain data."""
    import backfill
    from backfill.config import get_settings

    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database("genonce") as url,
        throwaway_queue("genonce") as queue,
        sandbox_process() as sandbox,
    ):
        failing = error_rates(sandbox, args.error_rate)  # the APIs this sandbox can fail
        sandbox.configure(seed=args.seed, error_rate=failing)
        if "openlibrary_rate_identified" in sandbox.config():  # resolution is not measured
            sandbox.configure(openlibrary_rate_identified=1000)
        env = {**sandbox.env(), **WORKER_ENV, **CLIENT}
        with Worker("backfill", queue, Path(tmp) / "worker.log", args.concurrency, env):
            published = dispatch_year(url, YEAR)
            statuses, seconds = wait_settled(url, args.timeout)
        stats = sandbox.stats()
        months = month_rows(url)
    asked = stats["by_month"]
    answered = stats.get("answered_by_month")  # None: this sandbox does not count answers
    pairs = [(label, g) for label in LABELS for g in GENERATORS]
    kept = [months[m]["answers_kept"] for m in LABELS]
    return {
        "code": revision(),
        "code_path": str(Path(backfill.__file__ or "").parent),
        "provider_max_tries": getattr(get_settings(), "provider_max_tries", None),
        "errors_on": sorted(failing),
        "published": published,
        "statuses": statuses,
        "seconds": round(seconds, 1),
        "asked": spread([int(asked.get(m, {}).get(g, 0)) for m, g in pairs]),
        "answered": None
        if answered is None
        else spread([int(answered.get(m, {}).get(g, 0)) for m, g in pairs]),
        "attempts": spread([months[m]["attempts"] for m in LABELS]),
        "generate_200s": sum(int(stats["by_status"][g].get("200", 0)) for g in GENERATORS),
        "answers_kept": None if None in kept else sum(k or 0 for k in kept),
        "per_month": {
            m: {**months[m], "asked": asked.get(m, {}), "answered": (answered or {}).get(m)}
            for m in LABELS
        },
        "calls": stats["calls"],
    }


def _dist(d: dict[str, Any] | None) -> str:
    return "n/a" if d is None else f"{d['min']} / {d['median']:g} / {d['max']}"


def _over(d: dict[str, Any] | None, unit: str) -> str:
    return "n/a" if d is None else f"{d['more_than_once']} of {d['of']} {unit}"


def _na(value: Any) -> str:
    return "n/a" if value is None else str(value)


def summary(r: dict[str, Any]) -> list[tuple[str, str]]:
    """One run's measures, as (name, value) rows."""
    done, failed = (r["statuses"].get(status, 0) for status in ("completed", "failed"))
    return [
        ("code", f"{r['code']} ({r['code_path']})"),
        ("generate requests per month x generator (by_month), min/median/max", _dist(r["asked"])),
        ("month x generator pairs asked more than once", _over(r["asked"], "pairs")),
        ("generate requests in all (24 pairs)", str(r["asked"]["total"])),
        ("complete answers per pair (answered_by_month), min/median/max", _dist(r["answered"])),
        ("pairs answered (paid) more than once", _over(r["answered"], "pairs")),
        ("generate requests answered 200 (gemini + xai)", str(r["generate_200s"])),
        ("answers kept (generations rows)", _na(r["answers_kept"])),
        ("attempts per month (month_attempts), min/median/max", _dist(r["attempts"])),
        ("months attempted more than once", _over(r["attempts"], "months")),
        ("months completed / failed", f"{done} / {failed}"),
        ("tries per request in an attempt (PROVIDER_MAX_TRIES)", _na(r["provider_max_tries"])),
        ("APIs failing (5xx)", ", ".join(r["errors_on"])),
        ("wall time to settle", f"{r['seconds']} s"),
    ]


def side_by_side(runs: dict[str, dict[str, Any]]) -> str:
    """The distributions of each run, one column per run."""
    columns = [summary(r) for r in runs.values()]
    rows = [[name, *(c[i][1] for c in columns)] for i, (name, _) in enumerate(columns[0])]
    return table(rows, ["measure", *runs])


def per_month(runs: dict[str, dict[str, Any]]) -> str:
    """Per month and run: asked gemini/xai, answered gemini/xai, attempts, status."""

    def cell(r: dict[str, Any], m: str) -> str:
        row = r["per_month"][m]
        asked = "/".join(str(row["asked"].get(g, 0)) for g in GENERATORS)
        answered = row["answered"]
        got = "/".join(str(answered.get(g, 0)) for g in GENERATORS) if answered else "n/a"
        return f"asked {asked}, answered {got}, {row['attempts']} att., {row['status']}"

    return table([[m, *(cell(r, m) for r in runs.values())] for m in LABELS], ["month", *runs])


def figures(after: dict[str, Any], before: dict[str, Any] | None, name: str) -> list[Figure]:
    """The after run's figures, each against the before run when there is one."""
    rows: list[tuple[str, Any]] = [
        ("generate requests that reached the model, 24 pairs", lambda r: r["asked"]["total"]),
        ("generate requests per pair, max", lambda r: r["asked"]["max"]),
        ("pairs asked more than once (of 24)", lambda r: r["asked"]["more_than_once"]),
        ("attempts per month, max", lambda r: r["attempts"]["max"]),
        ("months attempted more than once (of 12)", lambda r: r["attempts"]["more_than_once"]),
        ("months failed (of 12)", lambda r: r["statuses"].get("failed", 0)),
    ]
    out = [
        Figure(metric, get(after), "", name if before else "", get(before) if before else None)
        for metric, get in rows
    ]
    if after["answered"] is not None:
        out.append(
            Figure(
                "pairs answered (paid) more than once (of 24)",
                after["answered"]["more_than_once"],
                "",
                note="the old sandbox does not count answers",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure this tree, then (unless ``--before none``) the old one; print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="95985e3", help="commit to compare with, or none")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes (-c)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to settle, per run")
    parser.add_argument("--error-rate", type=float, default=0.15, help="5xx rate, every API")
    parser.add_argument("--seed", type=int, default=20241, help="the sandbox's seed")
    parser.add_argument("--json", type=Path, help="write the figures here (the before run)")
    args = parser.parse_args(argv)
    # A TERM (run_all.sh's timeout) unwinds like an error: worker, database, worktree go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    after = measure(args)
    log(f"{after['code']}: {after['statuses']} in {after['seconds']} s, asked {after['asked']}")
    if args.json:
        args.json.write_text(json.dumps(after))
        return 0
    runs = {f"after ({after['code']})": after}
    before = None
    if args.before != "none":
        argv = ["--before", "none", "--seed", str(args.seed), "--timeout", str(args.timeout)]
        argv += ["--error-rate", str(args.error_rate), "--concurrency", str(args.concurrency)]
        before = run_at(args.before, "bench.generate_once", argv)
        runs = {f"before ({before['code']})": before, **runs}
    print(side_by_side(runs))
    print()
    print(per_month(runs))
    name = f"before ({before['code']})" if before else ""
    details = {k: {**r, "per_month": "above"} for k, r in runs.items()}
    report("generate-once", figures(after, before, name), details)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
