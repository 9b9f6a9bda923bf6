"""Foundation: migrations and model constraints -- on the real PostgreSQL.

The settings tests are in tests/unit/test_settings.py (no database)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill.models import BackfillLog
from tests.conftest import ROOT, create_database, drop_database, migrate, subprocess_env


@pytest.fixture
def empty_db() -> str:
    name = "backfill_test_empty_" + __import__("uuid").uuid4().hex[:6]
    url = create_database(name)
    yield url
    drop_database(name)


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_up_down_up_on_empty_database(empty_db: str) -> None:
    migrate(empty_db)
    assert {"backfill_log", "books", "month_attempts", "quota_usage", "lookup_cache"} <= _tables(
        empty_db
    )
    migrate(empty_db, "base", down=True)
    assert _tables(empty_db) <= {"alembic_version"}
    migrate(empty_db)
    assert "backfill_log" in _tables(empty_db)


def test_alembic_check_reports_no_drift(empty_db: str) -> None:
    migrate(empty_db)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={empty_db}", "check"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def _month(session: Session, **kw: object) -> None:
    session.add(BackfillLog(**{"year": 2020, "month": 1, "status": "pending", **kw}))
    session.flush()


@pytest.mark.parametrize(
    "fields",
    [{"month": 13}, {"month": 0}, {"status": "exploded"}, {"year": 1850}, {"batch_size": 51}],
)
def test_constraints_reject_bad_rows(session: Session, fields: dict[str, object]) -> None:
    with pytest.raises(IntegrityError):
        _month(session, **fields)


def test_duplicate_year_month_rejected(session: Session) -> None:
    _month(session)
    with pytest.raises(IntegrityError):
        _month(session)


def test_rollback_fixture_isolates_tests(session: Session) -> None:
    assert session.scalar(text("SELECT count(*) FROM backfill_log")) == 0
    _month(session, month=5)
