"""Shared plumbing for the benchmarks: a throwaway database, a throwaway queue,
percentiles, and one way of printing (and collecting) results.

Every benchmark measures its baseline in the same run as the figure it compares,
because the machine is shared and noisy: only the ratios travel well.
Nothing here runs at import; a benchmark sets its environment first (the
settings are read once per process), then imports the service code.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/postgres"
)
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
SANDBOX_KEYS = {
    "GEMINI_API_KEY": "sandbox-gemini-key",
    "XAI_API_KEY": "sandbox-xai-key",
    "ISBNDB_API_KEY": "sandbox-isbndb-key",
}


# -- environment -------------------------------------------------------------


def set_env(**values: str | int | float) -> None:
    """Set environment variables for this process (and its children) and
    forget the cached settings, so the next ``get_settings()`` reads them."""
    for name, value in values.items():
        os.environ[name] = str(value)
    from backfill.config import get_settings

    get_settings.cache_clear()


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, with the repo on PYTHONPATH."""
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# -- database ----------------------------------------------------------------


def _admin_execute(sql: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the Alembic head (as tests/conftest.py does)."""
    from alembic.config import Config

    from alembic import command

    engine = create_engine(url)
    with engine.begin() as conn:
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.set_main_option("script_location", str(ROOT / "alembic"))
        cfg.attributes["configure_logger"] = False
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    engine.dispose()


@contextmanager
def throwaway_database(label: str) -> Iterator[str]:
    """A freshly created and migrated database, named in DATABASE_URL; dropped at exit."""
    name = f"backfill_bench_{label}_{RUN_ID}"
    _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_execute(f'CREATE DATABASE "{name}"')
    url = make_url(ADMIN_URL).set(database=name).render_as_string(False)
    try:
        migrate(url)
        set_env(DATABASE_URL=url)
        yield url
    finally:
        from backfill.db import dispose_engines

        dispose_engines()
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(url: str) -> None:
    """Empty every table of the benchmark database."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE month_attempts, books, lookup_cache, quota_usage, control_state,"
                " backfill_log RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()


# -- broker ------------------------------------------------------------------


@contextmanager
def throwaway_queue(label: str) -> Iterator[str]:
    """A unique queue name, set as BACKFILL_TASK_QUEUE; the queue is deleted at exit."""
    name = f"backfill-bench-{label}-{RUN_ID}"
    set_env(BACKFILL_TASK_QUEUE=name)
    try:
        yield name
    finally:
        from kombu import Connection

        with Connection(BROKER_URL) as conn:
            channel = conn.channel()
            for delete in (channel.queue_delete, channel.exchange_delete):
                with contextlib.suppress(Exception):  # never declared: nothing to delete
                    delete(name)


class DropPublisher:
    """BENCHMARK ONLY: a ``backfill.broker.Publisher`` that sends nothing.

    It lets the claim benchmarks time ``scheduler.schedule`` without the broker;
    every message "succeeds" (no errors returned), so no retry is recorded.
    """

    def __init__(self) -> None:
        self.dropped = 0

    def publish(self, messages: Iterable[Any]) -> dict[uuid.UUID, str]:
        self.dropped += sum(1 for _ in messages)
        return {}


# -- figures -----------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


@dataclass
class Figure:
    """One measured figure, with the baseline it is compared against (same run)."""

    metric: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if value != value:  # nan
        return "n/a"
    if abs(value) >= 100 or value == int(value):
        text_ = f"{value:,.0f}"
    elif abs(value) >= 1:
        text_ = f"{value:.2f}"
    else:
        text_ = f"{value:.3f}"
    return f"{text_} {unit}".strip()


def table(rows: list[list[str]], header: list[str]) -> str:
    """A Markdown table (readable in a terminal too)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


HEADER = ["benchmark", "metric", "value", "baseline (same run)", "ratio", "note"]


def figure_rows(bench: str, figures: list[Figure]) -> list[list[str]]:
    return [
        [
            bench,
            f.metric,
            fmt(f.value, f.unit),
            f"{f.baseline}: {fmt(f.baseline_value, f.unit)}" if f.baseline else "-",
            f"{f.ratio:.2f}x" if f.ratio is not None else "-",
            f.note,
        ]
        for f in figures
    ]


def report(bench: str, figures: list[Figure], details: dict[str, Any] | None = None) -> None:
    """Print the figures as a table; append them as JSON to ``$BENCH_RESULTS`` if set."""
    print()
    print(table(figure_rows(bench, figures), HEADER))
    if details:
        print(json.dumps(details, indent=2, default=str))
    sys.stdout.flush()
    out = os.environ.get("BENCH_RESULTS")
    if out:
        with open(out, "a") as fh:
            for f in figures:
                fh.write(json.dumps({"bench": bench, **asdict(f)}) + "\n")


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the figures."""
    print(f"  .. {message}", file=sys.stderr, flush=True)
