"""The ``backfill`` command through click's runner (with a real worker, and as a real
subprocess: tests/system/test_cli_processes.py)."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import update

from backfill import months, scheduler
from backfill.cli import cli
from backfill.cli.app import flag_message
from backfill.db import transaction
from backfill.exceptions import InvalidInput
from backfill.models import BackfillLog
from backfill.web import create_app
from tests.conftest import purge_queue
from tests.support.webutil import AUTH


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def set_month(year: int, month: int, **values: object) -> None:
    with transaction() as s:
        s.execute(
            update(BackfillLog)
            .where(BackfillLog.year == year, BackfillLog.month == month)
            .values(**values)
        )


@pytest.fixture
def seeded(committed_db: str) -> str:
    assert invoke("seed", "--from", "2023", "--to", "2024").exit_code == 0
    return committed_db


@pytest.fixture
def queue(queue_name: str) -> Iterator[str]:
    purge_queue(queue_name)
    yield queue_name
    purge_queue(queue_name)


def test_seed_twice(committed_db: str) -> None:
    first = invoke("seed", "--from", "2023", "--to", "2024")
    assert first.exit_code == 0
    assert first.output.strip() == "seeded 24 new months for 2023-2024 (0 already there)"
    again = invoke("seed", "--from", "2024", "--to", "2024")
    assert "seeded 0 new months for 2024-2024 (12 already there)" in again.output


def test_stats_json_is_exactly_the_endpoint_json(seeded: str) -> None:
    set_month(2024, 5, status="failed", books_generated=10, isbns_resolved=4, error_message="x")
    set_month(2024, 6, status="completed", books_generated=20, isbns_resolved=19)
    result = invoke("stats", "--json")
    assert result.exit_code == 0
    api = create_app().test_client().get("/api/internal/backfill-stats", headers=AUTH)
    assert json.loads(result.output) == api.json
    assert api.json["by_status"]["failed"] == 1


def test_stats_table(seeded: str) -> None:
    set_month(2024, 6, status="completed", books_generated=20, isbns_resolved=15)
    result = invoke("stats")
    assert result.exit_code == 0
    out = result.output
    assert "24" in out and "15 (75.0%)" in out and "isbndb" in out
    assert "running" in out and "PAUSED" not in out


def test_months_filters(seeded: str) -> None:
    set_month(2024, 5, status="failed", error_message="gemini: 503")
    result = invoke("months", "--status", "failed", "--year", "2024")
    assert result.exit_code == 0
    assert "2024-05" in result.output and "gemini: 503" in result.output
    assert "2024-04" not in result.output
    assert "1 of 1 months" in result.output
    as_json = json.loads(invoke("months", "--year", "2023", "--json").output)
    assert as_json["total"] == 12 and as_json["months"][0]["label"] == "2023-12"


def test_months_with_no_match_prints_a_sentence_not_an_empty_table(seeded: str) -> None:
    result = invoke("months", "--status", "failed")
    assert result.exit_code == 0
    assert result.output.strip() == "No months match."


def test_version_is_the_package_metadata() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"backfill {importlib.metadata.version('backfill')}"


def test_service_field_names_become_the_flags_typed() -> None:
    assert flag_message(InvalidInput("year_end", "must not be before year_start (2025)")) == (
        "--to: must not be before --from (2025)"
    )
    assert flag_message(InvalidInput("batch_size", "must be between 1 and 50")) == (
        "--batch-size: must be between 1 and 50"
    )
    # a month range stays "from 1 to 12": only the service's own names are replaced
    assert flag_message(InvalidInput("end_month", "must be a month from 1 to 12")) == (
        "--to: must be a month from 1 to 12"
    )


def test_schedule_dry_run(seeded: str) -> None:
    result = invoke("schedule", "--dry-run", "--batch-size", "3", "--years", "2024-2023")
    assert result.exit_code == 0, result.output
    assert "dry run: 3 months would be claimed" in result.output
    assert "2024-12" in result.output and "2024-10" in result.output
    assert "2024-09" not in result.output


def test_schedule_dispatches(seeded: str, queue: str) -> None:
    result = invoke("schedule", "--batch-size", "2", "--years", "2023")
    assert result.exit_code == 0, result.output
    assert "triggered 2, skipped 0, errors 0" in result.output
    assert purge_queue(queue) == 2
    with transaction() as s:
        assert months.get(s, 2023, 12).status == "processing"


def test_pause_resume_and_retry(seeded: str) -> None:
    assert invoke("pause").output.strip() == "dispatching paused"
    with transaction() as s:
        assert scheduler.is_paused(s)
    assert "PAUSED" in invoke("stats").output
    assert invoke("resume").exit_code == 0
    set_month(2024, 5, status="failed", retry_count=5)
    result = invoke("retry", "2024-05")
    assert result.exit_code == 0
    assert "2024-05 is pending again" in result.output
    with transaction() as s:
        row = months.get(s, 2024, 5)
        assert (row.status, row.retry_count, scheduler.is_paused(s)) == ("pending", 0, False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dispatch", "2024-13"], "MONTH: expected a month as YYYY-MM"),
        (["retry", "24-05"], "MONTH: expected a month as YYYY-MM"),
        (["retry", "1999-01"], "1999-01 is not in backfill_log"),
        (["dispatch", "2024-06"], "2024-06 is already completed"),
        (["schedule", "--years", "2020-20x"], "--years: expected a year range"),
        (["schedule", "--years", "1800-2000"], "--years: years must be from 1900 to 2100"),
        (["schedule", "--batch-size", "0"], "--batch-size: expected a whole number from 1 to 50"),
        (["seed", "--from", "2025", "--to", "2020"], "--to: must not be before --from (2025)"),
        (["seed", "--from", "99"], "--from: expected a year from 1900 to 2100"),
        (["months", "--status", "done"], "--status: expected one of pending, processing"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(seeded: str, args: list[str], message: str) -> None:
    set_month(2024, 6, status="completed")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]
