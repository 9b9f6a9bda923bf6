"""The web app as production runs it: a gunicorn process, spoken to over real HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, subprocess_env
from tests.support.webutil import AUTH, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(committed_db: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "2", "--timeout", "30", "--graceful-timeout", "3",
                "backfill.web:create_app()",
            ],
            cwd=ROOT, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                requests.get(url + "/healthz", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):  # still booting / busy machine
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
    assert "Traceback" not in log.read_text()


def test_api_over_http(server: str) -> None:
    s = requests.Session()
    health = s.get(server + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"

    assert s.get(server + "/api/internal/backfill-stats", timeout=5).status_code == 401
    seed = s.post(
        server + "/api/internal/seed-backfill-queue",
        json={"year_start": 2023, "year_end": 2024},
        headers=AUTH,
        timeout=10,
    )
    assert seed.status_code == 200 and seed.json()["months_seeded"] == 24

    dry = s.post(
        server + "/api/internal/schedule-backfill",
        json={"dry_run": True, "batch_size": 4},
        headers=AUTH,
        timeout=10,
    )
    assert dry.status_code == 200
    assert [m["month"] for m in dry.json()["months"]] == [12, 11, 10, 9]

    # The original cron's empty POST (paused first, so nothing is dispatched).
    assert s.post(server + "/api/internal/pause", headers=AUTH, timeout=5).status_code == 200
    cron = s.post(server + "/api/internal/schedule-backfill", headers=AUTH, timeout=10)
    assert cron.status_code == 200 and cron.json()["paused"] is True
    assert cron.json()["execution_summary"] == {"triggered": 0, "skipped": 0, "errors": 0}

    stats = s.get(server + "/api/internal/backfill-stats", headers=AUTH, timeout=10).json()
    assert stats["total_months"] == 24 and stats["by_status"]["pending"] == 24
    assert stats["paused"] is True

    bad = s.post(
        server + "/api/internal/schedule-backfill",
        data="{not json",
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "body"

    # A chunked body (no Content-Length) larger than the limit is cut off too.
    def chunks() -> Iterator[bytes]:
        yield b'{"x": "'
        for _ in range(64):
            yield b"a" * 1024
        yield b'"}'

    big = s.post(
        server + "/api/internal/schedule-backfill",
        data=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

    metrics = s.get(server + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert 'backfill_months{status="pending"} 24.0' in metrics.text

    page = s.get(server + "/", timeout=10)
    assert page.status_code == 200 and 'data-month="2024-05"' in page.text
    s.close()
