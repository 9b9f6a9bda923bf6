"""The ``backfill`` command with real processes: ``dispatch --wait`` against a real
``celery worker``, and the command itself as a subprocess (the click-runner tests are in
tests/integration/test_cli.py, whose helpers these share)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import requests
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from backfill import months
from backfill.cli import cli
from backfill.db import transaction
from tests.conftest import ROOT, subprocess_env
from tests.integration.test_cli import invoke, queue, seeded  # noqa: F401
from tests.support.webutil import free_port
from tests.support.worker_env import FAST


def test_dispatch_wait_until_completed(
    seeded: str,  # noqa: F811
    queue: str,  # noqa: F811
    worker_factory: Any,
    sandbox: Any,
) -> None:
    worker_factory(**{**sandbox.env(), **FAST})  # a real worker on the real broker
    result = invoke("dispatch", "2024-05", "--wait", "--poll", "0.2", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "dispatched 2024-05 as job" in result.output
    with transaction() as s:
        row = months.get(s, 2024, 5)
    assert row.status == "completed" and row.isbns_resolved > 0
    rate = f"{float(row.resolution_rate):.1f}%"
    assert f"2024-05 completed: {row.isbns_resolved} books resolved ({rate})" in result.output


def test_run_month_the_old_name_of_dispatch_reports_a_failure(
    seeded: str,  # noqa: F811
    queue: str,  # noqa: F811
    worker_factory: Any,
    sandbox: Any,
) -> None:
    sandbox.configure(fail_months={"2024-04": {"gemini": 99, "xai": 99, "status": 500}})
    worker_factory(**{**sandbox.env(), **FAST})
    result = invoke("run-month", "2024-04", "--wait", "--poll", "0.2", "--timeout", "60")
    assert result.exit_code == 1, result.output
    assert "2024-04 failed:" in result.output
    with transaction() as s:
        row = months.get(s, 2024, 4)
    assert (row.status, row.retry_count) == ("failed", 5)


def run_backfill(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "backfill"), *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_real_subprocess(seeded: str) -> None:  # noqa: F811
    ok = run_backfill("months", "--status", "pending", "--year", "2023", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["total"] == 12

    down = run_backfill("stats", DATABASE_URL="postgresql://u:hidden-pw@127.0.0.1:9/x")
    assert down.returncode == 2
    assert down.stderr.startswith("Error: database unreachable at 127.0.0.1:9/x")
    assert len(down.stderr.strip().splitlines()) == 1 and "hidden-pw" not in down.stderr
    assert down.stdout == ""

    for args, needle in (
        (("dispatch",), "Missing argument 'MONTH'"),
        (("bogus",), "No such command 'bogus'"),
        (("schedule", "--nope"), "No such option '--nope'"),
    ):
        usage = run_backfill(*args)  # click's own usage errors: one line too
        lines = usage.stderr.strip().splitlines()
        assert usage.returncode == 2 and len(lines) == 1, usage.stderr
        assert lines[0].startswith(f"Error: {needle}") and "--help" in lines[0]

    bad = run_backfill("stats", DATABASE_URL="mysql://localhost/x")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "Error: invalid setting DATABASE_URL: must be a PostgreSQL URL "
        "(postgresql+psycopg://...) (got 'mysql://localhost/x')"
    ]


def test_sandbox_command_serves_the_emulator(committed_db: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "backfill-sandbox"), "--port", str(port),
         "--config", '{"seed": 7}'],
        cwd=ROOT, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                stats = requests.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert stats.status_code == 200 and "calls" in stats.json()
        taken = run_sandbox("--port", str(port))  # one line, exit 2
        assert taken.returncode == 2
        assert taken.stderr.startswith("backfill-sandbox: ") and taken.stderr.count("\n") == 1
    finally:
        proc.terminate()
        proc.wait(10)
    bad = run_sandbox("--config", "{nope")
    assert bad.returncode == 2 and bad.stderr.startswith("backfill-sandbox: ")
    # The emulator is not a command of the service's CLI (it imports nothing of it).
    assert "sandbox" not in CliRunner().invoke(cli, ["--help"]).output


def run_sandbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "backfill-sandbox"), *args],
        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_migrate_creates_a_missing_database_then_only_migrates(committed_db: str) -> None:
    """``backfill migrate`` (the Procfile's release step and scripts/run-backfill's):
    a missing database is created and brought to the newest schema; run again, it
    creates nothing and changes nothing."""
    url = make_url(committed_db).set(database=f"backfill_migrate_{uuid.uuid4().hex[:8]}")
    target = url.render_as_string(hide_password=False)
    admin = create_engine(make_url(committed_db), isolation_level="AUTOCOMMIT")
    try:
        first = run_backfill("migrate", DATABASE_URL=target)
        assert first.returncode == 0, first.stderr
        assert f"created database {url.database}" in first.stdout
        again = run_backfill("migrate", DATABASE_URL=target)
        assert again.returncode == 0, again.stderr
        assert "created" not in again.stdout and "up to date" in again.stdout
        assert "INFO" not in first.stderr + again.stderr  # alembic's log lines stay out
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                head = conn.scalar(text("SELECT version_num FROM alembic_version"))
                tables = set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
        assert head and {"backfill_log", "candidates", "handoffs"} <= tables
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        admin.dispose()
