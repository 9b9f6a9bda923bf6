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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests
from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from backfill import quota, scheduler, stats
from backfill.config import ConfigError, Settings, load_settings
from backfill.db import session_factory
from backfill.stats import BookTotals, MonthSpan, StatusCounts
from backfill.web.auth import check_secret_strength

ROOT = Path(__file__).resolve().parent.parent
console = Console(stderr=False)
# Dropped first from the progress line when it does not fit the terminal.
OPTIONAL_QUOTAS = ("openlibrary", "googlebooks")


def state_dir() -> Path:
    """The project's own state directory (beat's schedule, a kept stack's pid)."""
    return ROOT / os.environ.get("BACKFILL_STATE_DIR", "var")


def _free_port(preferred: int, name: str = "") -> int:
    """``preferred`` when it is free, else any free port, announced in one line."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen = int(s.getsockname()[1])
        if chosen != preferred:
            console.print(f"{name or 'port'} {preferred} is taken: using {chosen} instead.")
        return chosen
    raise RuntimeError("no free port")


def _month(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{4})-(\d{2})", value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month like 2024-05")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Snapshot:
    """The range's months by status and their books, as the stats layer counts them."""

    months: StatusCounts
    books: BookTotals

    @property
    def total(self) -> int:
        return sum(self.months.model_dump().values())

    @property
    def done(self) -> int:
        return self.months.completed

    @property
    def failed(self) -> int:
        return self.months.failed

    @property
    def processing(self) -> int:
        return self.months.processing

    @property
    def waiting(self) -> int:
        """Pending, or waiting to retry."""
        return self.months.pending + self.months.retry


def _progress(settings: Settings, span: MonthSpan) -> Snapshot:
    with session_factory(settings.database_url)() as s:
        return Snapshot(stats.status_counts(s, span), stats.book_totals(s, span))


def _quota(settings: Settings) -> dict[str, str]:
    """Today's ``used/limit`` per provider."""
    with session_factory(settings.database_url)() as s:
        usage = quota.daily_usage(s, settings)
    return {p: f"{u['used']}/{u['limit']}" for p, u in usage.items()}


def counts_text(p: Snapshot) -> str:
    """The months by state, for the progress display's first line."""
    return f"done {p.done} failed {p.failed} running {p.processing} waiting {p.waiting}"


def detail_line(p: Snapshot, usage: dict[str, str], width: int) -> str:
    """The progress display's second line, fit to ``width``: the optional quotas
    (Open Library, Google Books) are dropped first, then the quota altogether."""
    books = f"resolved {p.books.isbns_resolved}/{p.books.books_generated}"
    required = {k: v for k, v in usage.items() if k not in OPTIONAL_QUOTAS}
    for shown in (usage, required):
        line = f"{books} · quota " + " ".join(f"{k} {v}" for k, v in shown.items())
        if len(line) <= width:
            return line
    return books


def progress_columns(width: int) -> tuple[ProgressColumn, ...]:
    """The first line: ``months ━━━ 130/288 done … waiting … 0:01:23`` in ``width``."""
    return (
        TextColumn("[bold]months"),
        BarColumn(bar_width=max(8, min(40, width - 68))),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )


class _TwoLineProgress(Progress):
    """The bar on one line, the counts and quota on the next: fits 80 columns."""

    detail = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self.detail, overflow="fold")


def _seed(settings: Settings, span: MonthSpan) -> tuple[int, int, int]:
    """Seed the range; returns (inserted, already there, already completed)."""
    (start_year, start_month), (end_year, end_month) = span
    with session_factory(settings.database_url)() as s, s.begin():
        result = scheduler.seed_months(
            s, start_year, end_year, start_month=start_month, end_month=end_month
        )
        done = stats.status_counts(s, span).completed
    return result.inserted, result.existing, done


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


def build_parser() -> argparse.ArgumentParser:
    """The main job's options (``scripts/run-backfill --help`` prints the same)."""
    parser = argparse.ArgumentParser(prog="run-backfill", description=__doc__)
    parser.add_argument(
        "--from",
        dest="start",
        type=_month,
        default=(2023, 1),
        metavar="YYYY-MM",
        help="first month of the range (default 2023-01)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=_month,
        default=(2024, 12),
        metavar="YYYY-MM",
        help="last month of the range, inclusive (default 2024-12)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="leave the stack running at the end (stop it: scripts/run-backfill --stop)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="give up (exit 1) when the range is not finished after this many seconds"
        " (default 3600)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=4,
        metavar="N",
        help="worker processes (WORKER_CONCURRENCY, default 4)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        "WEB_PORT": _free_port(8000, "web port"),
        "FLOWER_PORT": _free_port(5555, "Flower port"),
        "SANDBOX_PORT": _free_port(8765, "sandbox port"),
    }
    env.update({k: str(v) for k, v in ports.items()})
    env.setdefault("WEB_BIND", "127.0.0.1")  # honcho sets PORT: the Procfile would bind 0.0.0.0
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
        # ISBNdb's Basic plan (its daily limit, as the stats show it), but at 3
        # requests/s instead of 1 to keep the demo short: the service and the
        # sandbox are given the same two numbers.
        env.setdefault("ISBNDB_RATE_PER_SECOND", "3")
        env.setdefault(
            "SANDBOX_ARGS",
            f"--isbndb-rate {env['ISBNDB_RATE_PER_SECOND']}"
            f" --isbndb-daily-limit {base.isbndb_daily_limit}",
        )
        procfile = "Procfile.dev"
        console.print(
            f"No API keys set: using the local sandbox emulator at {sandbox} "
            "(set GEMINI_API_KEY, XAI_API_KEY and ISBNDB_API_KEY to use the real APIs)."
        )
    settings = load_settings()
    span: MonthSpan = (args.start, args.end)
    inserted, existing, done = _seed(settings, span)
    label = f"{args.start[0]}-{args.start[1]:02d} … {args.end[0]}-{args.end[1]:02d}"
    console.print(f"Seeded {inserted} new months in {label} ({existing} already there).")
    if existing and done == inserted + existing:
        console.print(
            f"All {done} months of {label} were completed by an earlier run: nothing is "
            "processed twice, so this run only shows their stats. Pick another range "
            "(--from/--to) or a fresh database (DATABASE_URL) to watch a backfill."
        )

    pid_file = state_dir() / "stack.pid"
    _warn_if_kept_stack(pid_file)
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
    if args.keep:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{stack.pid}\n")
    web = f"http://127.0.0.1:{ports['WEB_PORT']}"
    flower = f"http://127.0.0.1:{ports['FLOWER_PORT']}"
    console.print(f"Stack starting (logs: {log_path.relative_to(ROOT)}) …")
    shown = secret or "the BACKFILL_CRON_SECRET you set"
    for line in (
        f"Dashboard: {web}/   X-Cron-Secret and /login secret for this run: {shown}",
        f"Flower:    {flower}/",
        f"Metrics:   {web}/metrics",
        "Stop:      Ctrl-C"
        + (
            f" stops the run; the stack is kept: scripts/run-backfill --stop (or kill {stack.pid})"
            if args.keep
            else " (the stack stops by itself at the end)"
        ),
    ):
        # soft_wrap: never split the secret across lines
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    code = 0
    try:
        if not _wait_http(f"{web}/healthz", 90):
            console.print(f"[red]the web app did not come up; see {log_path}[/red]")
            return 1
        code = _watch(settings, span, args.timeout, stack)
    except KeyboardInterrupt:
        code = 130
    finally:
        if not args.keep or code:
            _stop(stack)
            pid_file.unlink(missing_ok=True)
    _final_table(env)
    console.print(f"Dashboard: {web}/   Flower: {flower}   Metrics: {web}/metrics")
    if args.keep and not code:
        console.print(
            f"Stack left running (honcho pid {stack.pid}); stop it with:"
            f" scripts/run-backfill --stop (or kill {stack.pid})"
        )
    else:
        console.print("Stack stopped.")
    return code


def _warn_if_kept_stack(pid_file: Path) -> None:
    """An earlier ``--keep`` run's stack still up holds the usual ports: say so."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return
    console.print(
        f"A stack kept by an earlier run is still up (pid {pid}); stop it with:"
        " scripts/run-backfill --stop"
    )


def _watch(
    settings: Settings,
    span: MonthSpan,
    timeout: float,
    stack: subprocess.Popen[bytes],
) -> int:
    deadline = time.monotonic() + timeout
    columns = progress_columns(console.width)
    live = console.is_terminal  # a log file gets one plain line per change instead
    last = ""
    bar = _TwoLineProgress(*columns, console=console, transient=False, disable=not live)
    with bar:
        first = _progress(settings, span)
        task = bar.add_task("backfill", total=first.total, counts=counts_text(first))
        while True:
            p = _progress(settings, span)
            usage = _quota(settings)
            bar.detail = detail_line(p, usage, console.width)
            bar.update(task, completed=p.done + p.failed, counts=counts_text(p))
            plain = f"{counts_text(p)} · {detail_line(p, usage, 10_000)}"
            if not live and plain != last:
                console.print(f"months {p.done + p.failed}/{p.total} · {plain}", soft_wrap=True)
                last = plain
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
