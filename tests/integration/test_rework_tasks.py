"""The ``backfill.reresolve`` task, its daily beat entry, and hand-typed task
arguments refused with one log line and no change -- called in-process (through a
real worker on the real broker: tests/system/test_rework_worker.py)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from backfill import scheduler
from backfill.db import get_engine, transaction
from backfill.task_args import month_task_args, reresolve_task_args
from backfill.tasks import process_month, reresolve_task, schedule_task
from tests.support.webutil import snapshot


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
