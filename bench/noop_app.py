"""BENCHMARK ONLY: a bare Celery app with one no-op task, the baseline for month tasks.

    celery -A bench.noop_app worker -Q $BACKFILL_TASK_QUEUE ...

Configured from the same ``celeryconfig`` as ``backfill`` (broker, queue,
acks_late, prefetch 1, confirms, serializer), so the only difference from a
month task is the work. The task appends "<sent> <started>" (epoch seconds) to
the file it is given -- a few microseconds -- so the benchmark can see when it
started without a result backend.
"""

from __future__ import annotations

import time

from celery import Celery

NOOP = "bench.noop"

app = Celery("bench-noop")
app.config_from_object("celeryconfig")


@app.task(name=NOOP, ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def noop(sent_at: float, log_path: str) -> None:
    """Record when the task started; do nothing else."""
    started = time.time()
    with open(log_path, "a") as fh:  # one short O_APPEND write: atomic across the pool
        fh.write(f"{sent_at!r} {started!r}\n")
