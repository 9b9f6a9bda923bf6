"""Running it like production: Flower against the real broker, structured logs
without secrets, and the Procfile's processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, subprocess_env
from tests.support.sandbox_fixture import free_port
from tests.support.worker_env import FAST
from tests.system.test_worker_e2e import dispatch, seed, wait_for

pytestmark = pytest.mark.slow

SECRETS = {
    "GEMINI_API_KEY": "gem-key-4c1d9e-not-for-logs",
    "XAI_API_KEY": "xai-key-77ab02-not-for-logs",
    "ISBNDB_API_KEY": "isbndb-key-e3f0aa-not-for-logs",
    "BACKFILL_CRON_SECRET": "cron-secret-51be-not-for-logs",
}


def test_flower_sees_the_worker_and_the_month_task(
    worker_factory: Callable[..., Any], sandbox: Any, committed_db: str, tmp_path: Path
) -> None:
    sandbox.reset()
    worker = worker_factory(**{**sandbox.env(), **FAST})
    port = free_port()
    log = (tmp_path / "flower.log").open("wb")
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "backfill",
            "flower",
            "--address=127.0.0.1",
            f"--port={port}",
            "--unauthenticated_api",
        ],
        cwd=ROOT,
        env=subprocess_env(FLOWER_UNAUTHENTICATED_API="true"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # Flower is up and consuming events
            try:
                if requests.get(f"{base}/healthcheck", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        seed(committed_db)
        # Flower's event consumer connects a moment after its HTTP server: run
        # months until one is seen whole (the first normally is). A task whose
        # task-received event came before the consumer shows no name: try the next.
        task: dict[str, Any] = {}
        for month in range(1, 7):
            job_id = dispatch(committed_db, 2024, month)
            assert (
                wait_for(committed_db, 2024, month, {"completed", "failed"}).status == "completed"
            )
            seen_by = time.monotonic() + 10
            while time.monotonic() < seen_by:
                task = requests.get(f"{base}/api/tasks", timeout=10).json().get(job_id, {})
                if task.get("state") == "SUCCESS" and task.get("name"):
                    break
                time.sleep(0.5)
            if task.get("name"):
                break
        assert task.get("name") == "backfill.process_month", task
        assert task.get("state") == "SUCCESS"
        assert str(task.get("worker", "")).startswith(worker.name.split("@")[0]), task
        workers = requests.get(f"{base}/api/workers", params={"status": "1"}, timeout=10).json()
        assert any(name.startswith(worker.name.split("@")[0]) for name in workers), workers
    finally:
        flower.terminate()
        try:
            flower.wait(10)
        except subprocess.TimeoutExpired:
            flower.kill()
            flower.wait(10)


def test_logs_carry_month_job_and_attempt_and_never_a_secret(
    worker_factory: Callable[..., Any], sandbox: Any, committed_db: str
) -> None:
    sandbox.reset()
    # Both generators fail every in-attempt try: attempt 1 fails, attempt 2 completes.
    sandbox.configure(fail_months={"2024-08": {"gemini": 4, "xai": 4}})
    env = {**sandbox.env(), **FAST, **SECRETS, "LOG_FORMAT": "json"}
    w = worker_factory(**env)
    seed(committed_db)
    job_id = dispatch(committed_db, 2024, 8)
    done = wait_for(committed_db, 2024, 8, {"completed", "failed"})
    assert done.status == "completed"
    time.sleep(0.5)
    text = w.log()
    for value in SECRETS.values():
        assert value not in text
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    month_lines = [r for r in records if r.get("month") == "2024-08"]
    assert len(month_lines) >= 4
    assert all(r.get("job_id") == job_id for r in month_lines)
    # Celery's own lines about the task (received, retry, succeeded) too
    about_job = [r for r in records if job_id in r["message"] or r.get("job_id") == job_id]
    assert any("received" in r["message"] for r in about_job)
    assert any("succeeded" in r["message"] for r in about_job)
    assert all(r.get("month") == "2024-08" for r in about_job), [
        r for r in about_job if r.get("month") != "2024-08"
    ]
    attempt_lines = [r for r in month_lines if "attempt" in r]
    assert {r["attempt"] for r in attempt_lines} >= {1, 2}
    assert any("failed" in r["message"] for r in attempt_lines)
    assert any("completed" in r["message"] for r in attempt_lines)
