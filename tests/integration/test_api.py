"""The internal API through Flask's test client, on the rolled-back ``session``."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill import months, scheduler
from backfill.config import load_settings
from backfill.models import BackfillLog
from backfill.web import create_app
from tests.conftest import purge_queue
from tests.support.webutil import AUTH, T0, add_attempt, add_month, snapshot


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


INTERNAL = [
    ("post", "/api/internal/schedule-backfill"),
    ("get", "/api/internal/backfill-stats"),
    ("post", "/api/internal/seed-backfill-queue"),
    ("get", "/api/internal/months"),
    ("get", "/api/internal/months/2024-05"),
    ("post", "/api/internal/months/2024-05/retry"),
    ("post", "/api/internal/months/2024-05/regenerate"),
    ("post", "/api/internal/reresolve"),
    ("post", "/api/internal/pause"),
    ("post", "/api/internal/resume"),
]


# -- auth


@pytest.mark.parametrize(("method", "path"), INTERNAL)
def test_internal_endpoints_need_the_cron_secret(
    client: FlaskClient, session: Session, method: str, path: str
) -> None:
    before = snapshot(session)
    missing = getattr(client, method)(path)
    wrong = getattr(client, method)(path, headers={"X-Cron-Secret": "test-cron-secreT"})
    for resp in (missing, wrong):
        assert resp.status_code == 401
        assert resp.json["error"]["code"] == "unauthorized"
        assert resp.json["error"]["field"] == "X-Cron-Secret"
    assert "missing" in missing.json["error"]["message"]
    assert snapshot(session) == before


@pytest.mark.parametrize(("method", "path"), INTERNAL)
def test_internal_api_closed_without_a_configured_secret(
    session: Session, method: str, path: str
) -> None:
    app = create_app(
        {"SESSION_FACTORY": lambda: session, "BACKFILL_SETTINGS": load_settings(cron_secret=None)}
    )
    resp = getattr(app.test_client(), method)(path, headers=AUTH)
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "not_configured"
    assert "BACKFILL_CRON_SECRET" in resp.json["error"]["message"]
    assert resp.json["error"]["field"] == "BACKFILL_CRON_SECRET"


# -- seed


def test_seed_is_idempotent_and_counts(client: FlaskClient, session: Session) -> None:
    body = {"year_start": 2020, "year_end": 2021}
    first = client.post("/api/internal/seed-backfill-queue", json=body, headers=AUTH)
    assert first.status_code == 200
    assert first.json["months_seeded"] == 24 and first.json["months_existing"] == 0
    assert "24" in first.json["message"]
    again = client.post(
        "/api/internal/seed-backfill-queue", json={"year_start": 2021, "year_end": 2022},
        headers=AUTH,
    )  # fmt: skip
    assert (again.json["months_seeded"], again.json["months_existing"]) == (12, 12)
    assert session.query(BackfillLog).count() == 36


def test_seed_with_an_empty_post_seeds_the_default_range(client: FlaskClient) -> None:
    resp = client.post("/api/internal/seed-backfill-queue", headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["months_seeded"] == 300
    assert (resp.json["year_start"], resp.json["year_end"]) == (2000, 2024)


# -- stats


def test_stats_zero_case(client: FlaskClient) -> None:
    resp = client.get("/api/internal/backfill-stats", headers=AUTH)
    assert resp.status_code == 200
    body = resp.json
    assert body["total_months"] == 0
    assert body["by_status"] == dict.fromkeys(
        ("pending", "processing", "completed", "failed", "retry"), 0
    )
    assert body["progress"] == {
        "total_books_generated": 0,
        "total_isbns_resolved": 0,
        "overall_resolution_rate": 0.0,
        "total_unresolved": 0,
        "total_reresolved": 0,
        "generator_calls_saved": 0,
        "total_isbns_queued": 0,
    }
    assert body["recent_activity"] == []
    assert body["api_calls"] == dict.fromkeys(
        ("gemini", "xai", "isbndb", "openlibrary", "googlebooks"), 0
    )
    # the keyless resolvers (Open Library, Google Books) have budgets too
    assert {"gemini", "xai", "isbndb"} <= set(body["quota_today"])
    assert body["quota_today"]["isbndb"]["used"] == 0
    assert body["paused"] is False


def test_stats_on_hand_built_rows(client: FlaskClient, session: Session) -> None:
    # 25 completed months finished one minute apart (the newest is 2001-01 + 24),
    # one failed month that failed last, one retry, one processing, two pending.
    for i in range(25):
        add_month(
            session, 2001 + i // 12, 1 + i % 12, status="completed",
            books_generated=10, isbns_resolved=7, gemini_calls=1, xai_calls=1, isbndb_calls=2,
            completed_at=T0 + dt.timedelta(minutes=i),
        )  # fmt: skip
    add_month(
        session, 2010, 1, status="failed", books_generated=4, isbns_resolved=1,
        gemini_calls=5, isbndb_calls=1, error_message="gemini: 503",
        last_retry_at=T0 + dt.timedelta(hours=1),
    )  # fmt: skip
    add_month(session, 2010, 2, status="retry", last_retry_at=T0 - dt.timedelta(days=1))
    add_month(session, 2010, 3, status="processing", started_at=T0)
    add_month(session, 2010, 4)
    add_month(session, 2010, 5)

    body = client.get("/api/internal/backfill-stats", headers=AUTH).json
    assert body["total_months"] == 30
    assert body["by_status"] == {
        "pending": 2, "processing": 1, "completed": 25, "failed": 1, "retry": 1,
    }  # fmt: skip
    assert body["progress"]["total_books_generated"] == 254
    assert body["progress"]["total_isbns_resolved"] == 176
    assert body["progress"]["overall_resolution_rate"] == round(176 * 100 / 254, 2)
    assert body["api_calls"] == {
        "gemini": 30,
        "xai": 25,
        "isbndb": 51,
        "openlibrary": 0,
        "googlebooks": 0,
    }

    recent = body["recent_activity"]
    assert len(recent) == 20
    assert (recent[0]["year"], recent[0]["month"], recent[0]["status"]) == (2010, 1, "failed")
    assert recent[0]["error_message"] == "gemini: 503"
    assert recent[0]["resolution_rate"] == 25.0
    # then the completed months, most recently completed first
    assert [(r["year"], r["month"]) for r in recent[1:4]] == [(2003, 1), (2002, 12), (2002, 11)]
    finished = [dt.datetime.fromisoformat(r["finished_at"]) for r in recent]
    assert finished == sorted(finished, reverse=True)
    assert all(r["status"] != "pending" and r["status"] != "processing" for r in recent)


def test_pause_and_resume_show_in_stats(client: FlaskClient) -> None:
    paused = client.post("/api/internal/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json["paused"] is True
    assert client.get("/api/internal/backfill-stats", headers=AUTH).json["paused"] is True
    resumed = client.post("/api/internal/resume", json={}, headers=AUTH)
    assert resumed.json["paused"] is False
    assert client.get("/api/internal/backfill-stats", headers=AUTH).json["paused"] is False


def test_empty_post_bodies_mean_all_defaults(client: FlaskClient) -> None:
    # The original cron sends an empty POST, with or without a JSON content type.
    for kwargs in ({}, {"data": "", "content_type": "application/json"}, {"data": " \n"}):
        resp = client.post("/api/internal/pause", headers=AUTH, **kwargs)
        assert resp.status_code == 200, resp.json
    resp = client.post("/api/internal/schedule-backfill", headers=AUTH, data="")
    assert resp.status_code == 200
    assert resp.json["batch_size"] == 10 and resp.json["dry_run"] is False


# -- schedule


def test_schedule_dry_run_lists_candidates_and_changes_nothing(
    client: FlaskClient, session: Session
) -> None:
    scheduler.seed_months(session, 2000, 2024)
    add_month_fail = session.scalar(
        select(BackfillLog).where(BackfillLog.year == 2024, BackfillLog.month == 12)
    )
    assert add_month_fail is not None
    add_month_fail.status, add_month_fail.error_message = "retry", "xai: timeout"
    session.flush()
    before = snapshot(session)
    resp = client.post(
        "/api/internal/schedule-backfill",
        json={"batch_size": 3, "dry_run": True, "year_range": {"start": 2024, "end": 2000}},
        headers=AUTH,
    )
    assert resp.status_code == 200
    body = resp.json
    assert body["dry_run"] is True and body["batch_size"] == 3 and body["months_selected"] == 3
    assert "execution_summary" not in body
    assert [(m["year"], m["month"]) for m in body["months"]] == [(2024, 12), (2024, 11), (2024, 10)]
    first = body["months"][0]
    assert first["status"] == "retry" and first["error_message"] == "xai: timeout"
    assert {"books_generated", "isbns_resolved", "resolution_rate", "job_id"} <= set(first)
    assert body["total_pending"] == 299 and body["total_retry"] == 1
    assert body["total_processing"] == body["total_completed"] == body["total_failed"] == 0
    assert snapshot(session) == before


def test_schedule_year_range_in_either_order(client: FlaskClient, session: Session) -> None:
    scheduler.seed_months(session, 2000, 2024)
    for year_range in ({"start": 2003, "end": 2001}, {"start": 2001, "end": 2003}):
        body = client.post(
            "/api/internal/schedule-backfill",
            json={"dry_run": True, "batch_size": 50, "year_range": year_range},
            headers=AUTH,
        ).json
        assert {m["year"] for m in body["months"]} == {2001, 2002, 2003}
        assert body["months_selected"] == 36


def test_schedule_dispatches_and_reports_job_ids(
    client: FlaskClient, session: Session, queue_name: str
) -> None:
    purge_queue(queue_name)
    try:
        scheduler.seed_months(session, 2020, 2021)
        resp = client.post("/api/internal/schedule-backfill", json={"batch_size": 2}, headers=AUTH)
        assert resp.status_code == 200
        body = resp.json
        assert body["dry_run"] is False and body["months_selected"] == 2
        assert body["execution_summary"] == {"triggered": 2, "skipped": 0, "errors": 0}
        assert body["execution_errors"] == []
        assert [(m["year"], m["month"]) for m in body["months"]] == [(2021, 12), (2021, 11)]
        job_ids = [m["job_id"] for m in body["months"]]
        assert all(uuid.UUID(j) for j in job_ids)
        assert body["total_processing"] == 2 and body["total_pending"] == 22
        rows = session.scalars(select(BackfillLog).where(BackfillLog.status == "processing"))
        assert sorted(str(r.job_id) for r in rows) == sorted(job_ids)
    finally:
        assert purge_queue(queue_name) == 2


def test_schedule_while_paused_dispatches_nothing(client: FlaskClient, session: Session) -> None:
    scheduler.seed_months(session, 2020, 2020)
    client.post("/api/internal/pause", headers=AUTH)
    body = client.post("/api/internal/schedule-backfill", headers=AUTH).json
    assert body["paused"] is True and body["months_selected"] == 0
    assert body["execution_summary"]["triggered"] == 0
    assert body["total_pending"] == 12


# -- months


def test_months_filters_and_pagination(client: FlaskClient, session: Session) -> None:
    scheduler.seed_months(session, 2020, 2021)
    for m in (3, 4, 5):
        row = months.get(session, 2021, m)
        row.status = "failed"
    session.flush()
    page = client.get("/api/internal/months?limit=5&offset=0", headers=AUTH).json
    assert page["total"] == 24 and len(page["months"]) == 5 and page["limit"] == 5
    assert page["months"][0]["label"] == "2021-12"
    nxt = client.get("/api/internal/months?limit=5&offset=20", headers=AUTH).json
    assert [m["label"] for m in nxt["months"]] == ["2020-04", "2020-03", "2020-02", "2020-01"]
    failed = client.get("/api/internal/months?status=failed&year=2021", headers=AUTH).json
    assert [m["label"] for m in failed["months"]] == ["2021-05", "2021-04", "2021-03"]
    assert failed["total"] == 3
    none = client.get("/api/internal/months?status=failed&year=2020", headers=AUTH).json
    assert none == {"months": [], "total": 0, "limit": 100, "offset": 0}


def test_month_detail_with_attempt_history(client: FlaskClient, session: Session) -> None:
    row = add_month(
        session, 2024, 5, status="failed", attempts=2, retry_count=2, error_message="final"
    )
    add_attempt(session, row, 1, "retry", 12.5, error="gemini: 503", gemini_calls=1)
    add_attempt(session, row, 2, "failed", 3.0, error="final", worker="w1", isbndb_calls=4)
    resp = client.get("/api/internal/months/2024-05", headers=AUTH)
    assert resp.status_code == 200
    body = resp.json
    assert body["month"]["label"] == "2024-05" and body["month"]["status"] == "failed"
    assert [a["attempt"] for a in body["attempts"]] == [1, 2]
    assert body["attempts"][0]["duration_seconds"] == 12.5
    assert body["attempts"][0]["error"] == "gemini: 503"
    assert body["attempts"][1]["isbndb_calls"] == 4
    assert body["last_error"] == "final"


def test_month_detail_unknown_month_is_404(client: FlaskClient) -> None:
    resp = client.get("/api/internal/months/1999-01", headers=AUTH)
    assert resp.status_code == 404
    assert resp.json["error"]["code"] == "month_not_found"
    assert "1999-01" in resp.json["error"]["message"]


def test_retry_puts_a_failed_month_back(client: FlaskClient, session: Session) -> None:
    add_month(session, 2024, 5, status="failed", retry_count=5, error_message="boom")
    resp = client.post("/api/internal/months/2024-05/retry", headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["month"]["status"] == "pending"
    assert resp.json["month"]["retry_count"] == 0
    row = months.get(session, 2024, 5)
    session.refresh(row)
    assert (row.status, row.retry_count) == ("pending", 0)


@pytest.mark.parametrize("status", ["completed", "pending"])
def test_retry_refuses_a_month_that_is_not_failed(
    status: str, client: FlaskClient, session: Session
) -> None:
    add_month(session, 2024, 5, status=status)
    session.commit()  # a savepoint: a failed request rolls back its own work only
    before = snapshot(session)
    resp = client.post("/api/internal/months/2024-05/retry", headers=AUTH)
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "month_not_claimable"
    assert status in resp.json["error"]["message"]
    assert snapshot(session) == before
    missing = client.post("/api/internal/months/2024-06/retry", headers=AUTH)
    assert missing.status_code == 404


# -- health and generic errors


def test_healthz_ok_with_real_database_and_broker(client: FlaskClient) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {
        "status": "ok",
        "checks": {"database": {"ok": True, "error": None}, "broker": {"ok": True, "error": None}},
    }


def test_healthz_503_when_the_broker_is_down(session: Session) -> None:
    settings = load_settings(celery_broker_url="amqp://guest:guest@127.0.0.1:9//")
    app = create_app({"SESSION_FACTORY": lambda: session, "BACKFILL_SETTINGS": settings})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.json["status"] == "unavailable"
    assert resp.json["checks"]["database"]["ok"] is True
    assert resp.json["checks"]["broker"]["ok"] is False
    assert "guest" not in resp.get_data(as_text=True)


def test_healthz_503_when_the_database_is_down() -> None:
    url = "postgresql+psycopg://postgres:pw-not-shown@127.0.0.1:9/nothing"
    app = create_app({"DATABASE_URL": url})
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.json["checks"]["database"]["ok"] is False
    assert resp.json["checks"]["broker"]["ok"] is True
    assert "pw-not-shown" not in resp.get_data(as_text=True)


def test_unknown_path_and_method_are_json(client: FlaskClient) -> None:
    missing = client.get("/api/internal/nope", headers=AUTH)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    wrong = client.get("/api/internal/schedule-backfill", headers=AUTH)
    assert wrong.status_code == 405 and wrong.json["error"]["code"] == "method_not_allowed"


def test_unexpected_error_is_a_json_500_without_internals(app: Flask) -> None:
    def boom() -> str:
        raise RuntimeError("secret internals /etc/passwd")

    app.add_url_rule("/boom", view_func=boom)
    resp = app.test_client().get("/boom")
    assert resp.status_code == 500
    assert resp.json["error"]["code"] == "internal_error"
    assert "internals" not in resp.get_data(as_text=True)


def test_database_down_is_a_503_without_connection_details() -> None:
    app = create_app({"DATABASE_URL": "postgresql+psycopg://u:pw-not-shown@127.0.0.1:9/x"})
    resp = app.test_client().get("/api/internal/backfill-stats", headers=AUTH)
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "database_unavailable"
    assert "pw-not-shown" not in resp.get_data(as_text=True)
    assert "127.0.0.1" not in resp.get_data(as_text=True)
