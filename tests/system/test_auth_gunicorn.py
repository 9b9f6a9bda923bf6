"""The auth throttle and the secret's length under gunicorn: real web processes.

Throttle state is shared by every gunicorn worker (in the database), and gunicorn
refuses to start with a short secret, in one line. The in-process tests of the
throttle are in tests/integration/test_auth_throttle.py.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from backfill.web.throttle import MAX_FAILURES
from tests.conftest import ROOT, subprocess_env
from tests.support.webutil import AUTH, SECRET, free_port

STATS = "/api/internal/backfill-stats"
WRONG = {"X-Cron-Secret": "test-cron-secreT"}


@pytest.fixture
def clean_throttle(committed_db: str, engine: Engine) -> Iterator[str]:
    """The committed test database with no auth_failures rows before or after."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auth_failures"))
    yield committed_db
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM auth_failures"))


def _get(port: int, headers: dict[str, str], source: str = "127.0.0.1") -> tuple[int, str | None]:
    # http.client, to choose the source address (any 127/8 address is the loopback)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=(source, 0))
    try:
        conn.request("GET", STATS, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Retry-After")
    finally:
        conn.close()


@pytest.mark.slow
def test_concurrent_guesses_across_gunicorn_workers_count_exactly(
    clean_throttle: str, engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", "2", "--threads", "4", "--timeout", "30", "--graceful-timeout", "3",
                "backfill.web:create_app()",
            ],
            cwd=ROOT, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                _get(port, {})
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: _get(port, WRONG), range(24)))
        statuses = [status for status, _ in answers]
        assert set(statuses) <= {401, 429} and statuses.count(401) >= MAX_FAILURES
        with engine.connect() as conn:
            state = conn.execute(
                text("SELECT failures, lockouts FROM auth_failures WHERE address = '127.0.0.1'")
            ).one()
        # every wrong secret that was compared was counted, once; one lockout however
        # many workers saw the limit crossed at the same moment
        assert state.failures == statuses.count(401)
        assert state.lockouts == 1

        status, retry_after = _get(port, AUTH)  # right secret, locked address
        assert status == 429 and retry_after is not None and 1 <= int(retry_after) <= 60
        assert _get(port, AUTH, source="127.0.0.2") == (200, None)
    finally:
        proc.terminate()
        proc.wait(15)
    output = log.read_text()
    assert "Traceback" not in output and SECRET not in output
    assert "127.0.0.1 locked out for" in output  # the lockout is logged, without the secret


@pytest.mark.slow
def test_gunicorn_refuses_a_short_secret_with_one_line(tmp_path: Path) -> None:
    short = "s3cr3t-15-chars"
    proc = subprocess.run(
        [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{free_port()}",
            # One worker: with two failing to load at the same instant, gunicorn's
            # arbiter can print its own traceback (a second exit while it halts).
            "--workers", "1", "--threads", "4", "backfill.web:create_app()",
        ],
        cwd=ROOT, env=subprocess_env(BACKFILL_CRON_SECRET=short), capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in output and short not in output
    assert "App failed to load" in output  # gunicorn stops; it does not respawn workers
    # The one line, said by each worker that tried to load the app (at most --workers).
    lines = {line for line in output.splitlines() if "BACKFILL_CRON_SECRET" in line}
    assert len(lines) == 1, output
    assert lines.pop().startswith("invalid setting BACKFILL_CRON_SECRET: must be at least 16")
