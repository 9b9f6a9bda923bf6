"""The ``backfill.reresolve`` task, its daily beat entry, and hand-typed task
arguments refused with one log line and no change -- called in-process and
through a real worker on the real broker."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from backfill import scheduler
from backfill.broker import get_app
from backfill.db import get_engine, transaction
from backfill.task_args import month_task_args, reresolve_task_args
from backfill.tasks import process_month, reresolve_task, schedule_task
from tests.conftest import ROOT, subprocess_env
from tests.webutil import snapshot


def test_beat_runs_reresolve_daily_and_drops_a_missed_tick() -> None:
    import celeryconfig

    entry = celeryconfig.beat_schedule["reresolve-daily"]
    assert entry["task"] == "backfill.reresolve" == reresolve_task.name
    assert entry["schedule"] == dt.timedelta(hours=24)
    assert 0 < entry["options"]["expires"] < 24 * 3600
    # the beat's kwargs are valid task arguments
    reresolve_task_args(**entry.get("kwargs", {}))
    assert reresolve_task.acks_late is False  # a run may outlast RabbitMQ's consumer timeout


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"month": "2024-5"}, "month: must be YYYY-MM, e.g. 2024-05 (got '2024-5')"),
        ({"month": 202405}, "month: must be YYYY-MM"),
        ({"month": "2024-13"}, "month: must be YYYY-MM"),
        ({"older_than_days": -1}, "older_than_days: must be a number of days from 0 to 36500"),
        ({"older_than_days": "7"}, "older_than_days: must be a number of days"),
        ({"older_than_days": True}, "older_than_days: must be a number of days"),
        ({"older_than_days": float("inf")}, "older_than_days: must be a number of days"),
        ({"older_than_days": 1e12}, "older_than_days: must be a number of days"),
    ],
)
def test_reresolve_task_refuses_bad_arguments(
    committed_db: str, caplog: pytest.LogCaptureFixture, kwargs: dict[str, Any], message: str
) -> None:
    before = snapshot(get_engine(committed_db))
    with caplog.at_level(logging.WARNING, logger="backfill.tasks"):
        result = reresolve_task(**kwargs)
    assert message in result["refused"]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and message in refused[0], refused
    assert refused[0].startswith("backfill.reresolve refused: ")
    assert snapshot(get_engine(committed_db)) == before


def test_reresolve_task_with_nothing_open(committed_db: str) -> None:
    with transaction() as s:
        scheduler.seed_months(s, 2024, 2024)
    result = reresolve_task(month="2024-05", older_than_days=7)
    assert result == {
        "months": [], "tried": 0, "resolved": 0, "unresolved": 0, "pending": 0, "busy": [],
        "stopped": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 500}, "batch_size: must be an integer from 1 to 50 (got 500)"),
        ({"batch_size": 0}, "batch_size: must be an integer from 1 to 50 (got 0)"),
        ({"batch_size": "10"}, "batch_size: must be an integer from 1 to 50 (got '10')"),
        ({"batch_size": True}, "batch_size: must be an integer from 1 to 50 (got True)"),
        ({"year": 1800}, "year: must be an integer from 1900 to 2100 (got 1800)"),
        ({"month": 13}, "month: must be an integer from 1 to 12 (got 13)"),
        ({"month": "5"}, "month: must be an integer from 1 to 12 (got '5')"),
        ({"job_id": "not-a-uuid"}, "job_id: must be a UUID (got 'not-a-uuid')"),
    ],
)
def test_process_month_refuses_bad_arguments(
    committed_db: str, caplog: pytest.LogCaptureFixture, kwargs: dict[str, Any], message: str
) -> None:
    with transaction() as s:
        scheduler.seed_months(s, 2024, 2024)
    before = snapshot(get_engine(committed_db))
    args = {"year": 2024, "month": 5, **kwargs}
    with caplog.at_level(logging.WARNING, logger="backfill.tasks"):
        assert process_month(**args) == "refused"
    lines = [r.getMessage() for r in caplog.records if r.name == "backfill.tasks"]
    assert lines == [f"backfill.process_month refused: {message}"]
    assert snapshot(get_engine(committed_db)) == before


def test_good_month_arguments_pass_unchanged() -> None:
    job = "0b4c5f0e-3c1e-4d5e-9a51-7c1f0e2d3a4b"
    assert month_task_args(2024, 5, 20, job) == (2024, 5, 20, job)
    assert month_task_args(2024, 5) == (2024, 5, None, None)


def test_schedule_task_refuses_a_bad_batch_size(
    committed_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    with transaction() as s:
        scheduler.seed_months(s, 2024, 2024)
    before = snapshot(get_engine(committed_db))
    with caplog.at_level(logging.WARNING, logger="backfill.tasks"):
        result = schedule_task(batch_size=500)
    assert "batch_size" in result["error"]
    assert [r.getMessage() for r in caplog.records if r.name == "backfill.tasks"] == [
        "backfill.schedule refused: batch_size: must be between 1 and 50"
    ]
    assert snapshot(get_engine(committed_db)) == before


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
    app = get_app()
    app.send_task("backfill.reresolve", kwargs={"month": "May 2024"})
    _wait_for_log(worker, "backfill.reresolve refused: month: must be YYYY-MM")
    assert snapshot(engine) == before

    app.send_task("backfill.reresolve", kwargs={"month": "2024-05", "older_than_days": 7})
    _wait_for_log(worker, "re-resolution: {'months': [], 'tried': 0")
    assert "Traceback" not in worker.log()
