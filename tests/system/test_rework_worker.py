"""Hand-typed task arguments and ``backfill.reresolve`` through a real ``celery worker``
on the real broker (the in-process tests are in tests/integration/test_rework_tasks.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from backfill import scheduler
from backfill.celery import app as celery_app
from backfill.db import get_engine, transaction
from tests.conftest import ROOT, subprocess_env
from tests.support.webutil import snapshot


def _wait_for_log(worker: Any, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = worker.log()
        if needle in text:
            return str(text)
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in the worker log:\n{worker.log()[-3000:]}")


@pytest.mark.slow
def test_a_real_worker_refuses_hand_typed_arguments_and_runs_reresolve(
    worker_factory: Callable[..., Any], committed_db: str
) -> None:
    with transaction() as s:
        scheduler.seed_months(s, 2024, 2024)
    engine = get_engine(committed_db)
    before = snapshot(engine)
    worker = worker_factory(concurrency=1)
    # exactly as an operator would type it
    call = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "backfill", "call", "backfill.process_month",
         '--kwargs={"year": 2024, "month": 5, "batch_size": 500}'],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert call.returncode == 0, call.stderr
    log = _wait_for_log(
        worker,
        "backfill.process_month refused: batch_size: must be an integer from 1 to 50 (got 500)",
    )
    assert "Traceback" not in log
    app = celery_app
    app.send_task("backfill.reresolve", kwargs={"month": "May 2024"})
    _wait_for_log(worker, "backfill.reresolve refused: month: must be YYYY-MM")
    assert snapshot(engine) == before

    app.send_task("backfill.reresolve", kwargs={"month": "2024-05", "older_than_days": 7})
    _wait_for_log(worker, "re-resolution: {'months': [], 'tried': 0")
    assert "Traceback" not in worker.log()
