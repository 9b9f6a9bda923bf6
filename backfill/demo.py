"""The main job: run a real backfill over a range with the whole stack, watch it,
print the final stats, and stop what it started.

``scripts/run-backfill`` prepares the machine (services, virtualenv, database)
and then runs ``python -m backfill.demo``. The stack is the Procfile's (web,
worker, beat, flower; plus the sandbox when no API key is set), run by honcho,
so what runs here is what runs in production.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import func, literal, select, tuple_

from backfill import quota, scheduler
from backfill.config import ConfigError, Settings, load_settings
from backfill.db import session_factory
from backfill.models import BackfillLog
from backfill.web.auth import check_secret_strength

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=False)
TERMINAL = ("completed", "failed")


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


def _month(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month like 2024-05")
    return int(match.group(1)), int(match.group(2))


@dataclass
class Snapshot:
    total: int
    done: int
    failed: int
    waiting: int
    processing: int
    resolved: int
    generated: int


def _progress(settings: Settings, start: tuple[int, int], end: tuple[int, int]) -> Snapshot:
    key = BackfillLog.year * 12 + BackfillLog.month
    in_range = key.between(start[0] * 12 + start[1], end[0] * 12 + end[1])
    with session_factory(settings.database_url)() as s:
        row = s.execute(
            select(
                func.count(),
                func.count().filter(BackfillLog.status == "completed"),
                func.count().filter(BackfillLog.status == "failed"),
                func.count().filter(BackfillLog.status == "processing"),
                func.coalesce(func.sum(BackfillLog.isbns_resolved), 0),
                func.coalesce(func.sum(BackfillLog.books_generated), 0),
            ).where(in_range)
        ).one()
    total, done, failed, processing, resolved, generated = (int(v) for v in row)
    return Snapshot(
        total, done, failed, total - done - failed - processing, processing, resolved, generated
    )


def _quota_line(settings: Settings) -> str:
    with session_factory(settings.database_url)() as s:
        usage = quota.daily_usage(s, settings)
    return " ".join(f"{p} {u['used']}/{u['limit']}" for p, u in usage.items())


def _seed(settings: Settings, start: tuple[int, int], end: tuple[int, int]) -> tuple[int, int, int]:
    """Seed the range; returns (inserted, already there, already completed)."""
    with session_factory(settings.database_url)() as s, s.begin():
        result = scheduler.seed_months(s, start[0], end[0], start_month=start[1], end_month=end[1])
        done = s.scalar(
            select(func.count())
            .select_from(BackfillLog)
            .where(
                tuple_(BackfillLog.year, BackfillLog.month)
                >= tuple_(literal(start[0]), literal(start[1])),
                tuple_(BackfillLog.year, BackfillLog.month)
                <= tuple_(literal(end[0]), literal(end[1])),
                BackfillLog.status == "completed",
            )
        )
    return result.inserted, result.existing, int(done or 0)


def _cron_secret(env: dict[str, str]) -> str | None:
    """Give this run a fresh random cron secret unless the operator set one.

    Returns the generated secret (to show the operator), or None when the
    environment's own is used: that one is never printed.
    """
    if env.get("BACKFILL_CRON_SECRET"):
        return None
    env["BACKFILL_CRON_SECRET"] = secrets.token_urlsafe(24)
    return env["BACKFILL_CRON_SECRET"]


def _wait_http(url: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run-backfill", description=__doc__)
    parser.add_argument("--from", dest="start", type=_month, default=(2023, 1))
    parser.add_argument("--to", dest="end", type=_month, default=(2024, 12))
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after N seconds")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error("--to must not be before --from")
    try:
        base = load_settings()
        check_secret_strength(base)  # the web app would refuse it: say so here, once
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2

    env = dict(os.environ)
    ports = {
        "WEB_PORT": _free_port(8000),
        "FLOWER_PORT": _free_port(5555),
        "SANDBOX_PORT": _free_port(8765),
    }
    env.update({k: str(v) for k, v in ports.items()})
    secret = _cron_secret(env)
    env.setdefault("BACKFILL_BEAT_INTERVAL_SECONDS", "5")
    env.setdefault("WORKER_CONCURRENCY", str(args.workers))
    env["BACKFILL_YEAR_START"] = str(min(base.year_start, args.start[0]))
    env["BACKFILL_YEAR_END"] = str(max(base.year_end, args.end[0]))
    procfile = "Procfile"
    if base.uses_sandbox_keys:
        sandbox = f"http://127.0.0.1:{ports['SANDBOX_PORT']}"
        for name in ("GEMINI", "XAI", "ISBNDB"):
            env[f"{name}_BASE_URL"] = sandbox
            env[f"{name}_API_KEY"] = "sandbox-key"
        # The title searches too: the main job must never reach the real internet.
        for name in ("OPENLIBRARY", "GOOGLE_BOOKS"):
            env[f"{name}_BASE_URL"] = sandbox
        env.setdefault("OPENLIBRARY_CONTACT", "demo@example.org")
        # The sandbox plays a Premium ISBNdb plan (3 requests/s) to keep the demo short.
        env.setdefault("ISBNDB_RATE_PER_SECOND", "3")
        env.setdefault(
            "SANDBOX_ARGS",
            f"--isbndb-rate {env['ISBNDB_RATE_PER_SECOND']} --isbndb-daily-limit 15000",
        )
        procfile = "Procfile.dev"
        console.print(
            f"No API keys set: using the local sandbox emulator at {sandbox} "
            "(set GEMINI_API_KEY, XAI_API_KEY and ISBNDB_API_KEY to use the real APIs)."
        )
    settings = load_settings()
    inserted, existing, done = _seed(settings, args.start, args.end)
    label = f"{args.start[0]}-{args.start[1]:02d} … {args.end[0]}-{args.end[1]:02d}"
    console.print(f"Seeded {inserted} new months in {label} ({existing} already there).")
    if existing and done == inserted + existing:
        console.print(
            f"All {done} months of {label} were completed by an earlier run: nothing is "
            "processed twice, so this run only shows their stats. Pick another range "
            "(--from/--to) or a fresh database (DATABASE_URL) to watch a backfill."
        )

    log_path = ROOT / "artifacts" / "stack.log"
    log_path.parent.mkdir(exist_ok=True)
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "honcho", "-f", str(ROOT / procfile), "start"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    web = f"http://127.0.0.1:{ports['WEB_PORT']}"
    flower = f"http://127.0.0.1:{ports['FLOWER_PORT']}"
    console.print(f"Stack starting (logs: {log_path.relative_to(ROOT)}) …")
    shown = secret or "the BACKFILL_CRON_SECRET you set"
    console.print(
        f"Dashboard: {web}/   X-Cron-Secret and /login secret for this run: {shown}",
        soft_wrap=True,  # never split the secret across lines
        highlight=False,
        markup=False,
    )
    code = 0
    try:
        if not _wait_http(f"{web}/healthz", 90):
            console.print(f"[red]the web app did not come up; see {log_path}[/red]")
            return 1
        code = _watch(settings, args.start, args.end, args.timeout, stack)
    except KeyboardInterrupt:
        code = 130
    finally:
        if not args.keep or code:
            _stop(stack)
    _final_table(env)
    console.print(f"Dashboard: {web}/   Flower: {flower}   Metrics: {web}/metrics")
    if args.keep and not code:
        console.print(
            f"Stack left running (honcho pid {stack.pid}); stop it with: kill {stack.pid}"
        )
    else:
        console.print("Stack stopped.")
    return code


def _watch(
    settings: Settings,
    start: tuple[int, int],
    end: tuple[int, int],
    timeout: float,
    stack: subprocess.Popen[bytes],
) -> int:
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("[bold]months"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    live = console.is_terminal  # a log file gets one plain line per change instead
    last = ""
    with Progress(*columns, console=console, transient=False, disable=not live) as bar:
        first = _progress(settings, start, end)
        task = bar.add_task("backfill", total=first.total, detail="")
        while True:
            p = _progress(settings, start, end)
            detail = (
                f"done {p.done} · failed {p.failed} · running {p.processing} · "
                f"waiting {p.waiting} · books resolved {p.resolved}/{p.generated} · "
                f"quota {_quota_line(settings)}"
            )
            bar.update(task, completed=p.done + p.failed, detail=detail)
            if not live and detail != last:
                console.print(f"months {p.done + p.failed}/{p.total} · {detail}", soft_wrap=True)
                last = detail
            if p.done + p.failed >= p.total:
                return 0 if p.failed == 0 else 1
            if stack.poll() is not None:
                console.print("[red]the stack stopped unexpectedly; see artifacts/stack.log[/red]")
                return 1
            if time.monotonic() > deadline:
                console.print("[red]timed out before every month finished[/red]")
                return 1
            time.sleep(1)


def _stop(stack: subprocess.Popen[bytes]) -> None:
    if stack.poll() is None:
        os.killpg(stack.pid, signal.SIGTERM)
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait(10)


def _final_table(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "backfill.cli", "stats"], cwd=ROOT, env=env, check=False)


if __name__ == "__main__":
    raise SystemExit(main())
