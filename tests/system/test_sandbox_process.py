"""The API emulator as a process of its own: ``python -m backfill.sandbox`` and
``backfill sandbox`` (the emulator in a thread is tested in
tests/integration/test_sandbox.py)."""

from __future__ import annotations

import subprocess
import time

import requests

from tests.conftest import ROOT
from tests.support.sandbox_fixture import free_port, start_sandbox_process


def test_sandbox_runs_as_its_own_process() -> None:
    port = free_port()
    proc = start_sandbox_process(port, config={"isbndb_daily_limit": 0})
    try:
        url = f"http://127.0.0.1:{port}"
        spent = requests.get(f"{url}/book/9780306406157", headers={"Authorization": "k"}, timeout=5)
        assert spent.status_code == 429 and spent.json() == {"message": "Limit Exceeded"}
        stats = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
        assert stats["calls"]["isbndb"] == 1
    finally:
        proc.terminate()
        proc.wait(10)


def test_backfill_sandbox_command_enforces_isbndb_default_limits() -> None:
    """``backfill-sandbox --port N`` serves ISBNdb's default plan: 1 request/s."""
    port = free_port()
    command = [str(ROOT / ".venv" / "bin" / "backfill-sandbox"), "--port", str(port)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/_sandbox/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        answers = [
            requests.get(f"{url}/book/9780306406157", headers={"Authorization": "k"}, timeout=5)
            for _ in range(3)
        ]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and limited[0].json() == {"message": "Too Many Requests"}
        assert answers[0].status_code in (200, 404)
    finally:
        proc.terminate()
        proc.wait(10)
