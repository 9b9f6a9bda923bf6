"""``backfill month``, ``backfill regenerate`` and ``backfill reresolve`` on committed rows."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from backfill import months, scheduler
from backfill.cli import cli
from backfill.db import transaction
from backfill.models import Candidate, Generation
from backfill.web import create_app
from tests.support.webutil import AUTH, add_attempt, add_candidate


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def month(committed_db: str) -> str:
    """2024 seeded; 2024-05 completed with a stored answer and three candidates."""
    with transaction() as s:
        scheduler.seed_months(s, 2024, 2024)
        row = months.get(s, 2024, 5)
        row.status, row.books_generated, row.isbns_resolved = "completed", 2, 1
        row.resolution_rate = 50
        s.add(Generation(backfill_id=row.id, provider="xai", books=[]))
        add_attempt(s, row, 1, "completed", 4.0, generators_reused=1)
        add_candidate(
            s, row, "Found Book", "resolved", isbn13="9780000000002", resolver="isbndb",
            generators=("gemini", "xai"), authors=["Ann Author"],
        )  # fmt: skip
        # tried just now: ``--older-than`` leaves it alone (so no HTTP call is made)
        add_candidate(
            s, row, "Lost Book", "unresolved", generators=("xai",),
            last_tried_at=s.scalar(select(func.now())),
        )  # fmt: skip
        add_candidate(s, row, "Made Up", "invalid_isbn")
    return committed_db


def current_candidates() -> int:
    with transaction() as s:
        return int(
            s.scalar(
                select(func.count()).select_from(Candidate).where(Candidate.superseded_at.is_(None))
            )
            or 0
        )


def test_month_shows_row_attempts_and_candidates(month: str) -> None:
    result = invoke("month", "2024-05")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2024-05" in out and "completed" in out and "1 / 2 (50.0%)" in out
    # (rich wraps long cells at the runner's 80 columns; the ISBN and status never)
    for needle in ("Found", "Ann Author", "9780000000002", "isbndb", "gemini,", "invalid_isbn"):
        assert needle in out
    assert "Lost Book" in out and "unresolved" in out
    assert "3 candidates: 1 invalid_isbn, 1 resolved, 1 unresolved" in out

    as_json = json.loads(invoke("month", "2024-05", "--json").output)
    api = create_app().test_client().get("/api/internal/months/2024-05", headers=AUTH)
    assert as_json == api.json
    assert {c["title"]: c["status"] for c in as_json["candidates"]} == {
        "Found Book": "resolved", "Lost Book": "unresolved", "Made Up": "invalid_isbn",
    }  # fmt: skip
    assert as_json["attempts"][0]["generators_reused"] == 1

    empty = invoke("month", "2024-04")
    assert empty.exit_code == 0 and "no candidates" in empty.output


def test_regenerate(month: str) -> None:
    result = invoke("regenerate", "2024-05")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "2024-05: 1 generator answers and 3 candidates superseded (kept); "
        "now pending, the next schedule run generates it again"
    )
    assert current_candidates() == 0
    with transaction() as s:
        assert months.get(s, 2024, 5).status == "pending"


def test_regenerate_refuses_a_live_lease_and_an_unknown_month(month: str) -> None:
    with transaction() as s:
        row = months.get(s, 2024, 5)
        row.status, row.job_id = "processing", uuid.uuid4()
        row.lease_expires_at = s.scalar(select(func.now())) + dt.timedelta(hours=1)
    for args, needle in (
        (["regenerate", "2024-05"], "2024-05 is being processed by job"),
        (["regenerate", "1999-01"], "1999-01 is not in backfill_log"),
        (["regenerate", "2024-5"], "MONTH: expected a month as YYYY-MM"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0]
    assert current_candidates() == 3


def test_reresolve_with_nothing_open_is_quick(month: str) -> None:
    # The one open candidate was tried just now: not older than 7 days.
    result = invoke("reresolve", "--month", "2024-05", "--older-than", "7d")
    assert result.exit_code == 0, result.output
    assert "books tried" in result.output and "nothing to re-resolve" in result.output
    as_json = invoke("reresolve", "--month", "2024-04", "--json")  # no candidates at all
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == {
        "months": [], "tried": 0, "resolved": 0, "unresolved": 0, "pending": 0, "busy": [],
        "stopped": None,
    }  # fmt: skip
    everything = invoke("reresolve", "--older-than", "12h", "--json")
    assert json.loads(everything.output)["tried"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reresolve", "--month", "2024-5"], "--month: expected a month as YYYY-MM"),
        (["reresolve", "--month", "may"], "--month: expected a month as YYYY-MM"),
        (["reresolve", "--older-than", "7w"], "--older-than: expected a duration such as 7d"),
        (["reresolve", "--older-than", "-1d"], "--older-than: expected a duration such as 7d"),
        (["reresolve", "--older-than", "99999999999d"], "--older-than: must be at most 36500d"),
        (["reresolve", "--month", "1999-01"], "1999-01 is not in backfill_log"),
        (["month", "2024-13"], "MONTH: expected a month as YYYY-MM"),
        (["month", "1999-01"], "1999-01 is not in backfill_log"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(month: str, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0]


def test_stats_show_unresolved_reresolved_and_saved_calls(month: str) -> None:
    out = invoke("stats").output
    assert "books unresolved" in out and "resolved by re-resolution" in out
    assert "generator calls saved" in out
    progress = json.loads(invoke("stats", "--json").output)["progress"]
    assert (
        progress["total_unresolved"],
        progress["total_reresolved"],
        progress["generator_calls_saved"],
    ) == (1, 0, 1)
