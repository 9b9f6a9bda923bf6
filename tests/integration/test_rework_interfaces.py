"""Issue 10's operator surface over HTTP: a month's candidates, regenerate,
re-resolve (queued on the real broker), and the new stats and metrics fields.

The app runs on the rolled-back ``session``; candidates are inserted as rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from backfill import months
from backfill.config import load_settings
from backfill.models import BackfillLog, Candidate, Generation
from backfill.web import create_app
from tests.conftest import purge_queue
from tests.support.brokerutil import drain
from tests.support.webutil import AUTH, add_attempt, add_candidate, add_month, snapshot

REGENERATE = "/api/internal/months/{}/regenerate"
RERESOLVE = "/api/internal/reresolve"


@pytest.fixture
def app(session: Session) -> Flask:
    return create_app({"TESTING": True, "SESSION_FACTORY": lambda: session})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def queue(queue_name: str) -> Any:
    purge_queue(queue_name)
    yield queue_name
    purge_queue(queue_name)


def month_with_books(session: Session, **fields: Any) -> BackfillLog:
    """2024-05 with a stored answer and four current candidates, one superseded."""
    fields.setdefault("status", "completed")
    row = add_month(session, 2024, 5, books_generated=3, isbns_resolved=1, **fields)
    session.add(Generation(backfill_id=row.id, provider="gemini", books=[{"title": "x"}]))
    add_candidate(
        session, row, "Found Book", "resolved", isbn13="9780000000002",
        resolver="isbndb", generators=("gemini", "xai"),
    )  # fmt: skip
    add_candidate(session, row, "Lost Book", "unresolved", generators=("xai",), tries=2)
    add_candidate(session, row, "Late Book", "resolved", isbn13="9780000000019",
                  resolver="openlibrary", reresolved=True)  # fmt: skip
    add_candidate(session, row, "Made Up", "invalid_isbn")
    add_candidate(session, row, "Old List Book", "unresolved",
                  superseded_at=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))  # fmt: skip
    return row


def candidate_rows(session: Session) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in session.execute(
            text("SELECT id, status, superseded_at FROM candidates ORDER BY id")
        )
    ]


# -- GET months/{YYYY-MM}: candidates


def test_month_detail_lists_its_current_candidates(client: FlaskClient, session: Session) -> None:
    month_with_books(session)
    body = client.get("/api/internal/months/2024-05", headers=AUTH).json
    books = {c["title"]: c for c in body["candidates"]}
    assert set(books) == {"Found Book", "Lost Book", "Late Book", "Made Up"}  # not superseded
    found = books["Found Book"]
    assert {k: found[k] for k in ("title", "authors", "status", "isbn13", "resolver")} == {
        "title": "Found Book",
        "authors": ["A. Writer"],
        "status": "resolved",
        "isbn13": "9780000000002",
        "resolver": "isbndb",
    }
    assert found["generators"] == ["gemini", "xai"]
    assert found["claimed_isbns"] == {"gemini": ["9780000000002"], "xai": ["9780000000002"]}
    lost = books["Lost Book"]
    assert (lost["status"], lost["isbn13"], lost["resolver"], lost["tries"]) == (
        "unresolved", None, None, 2,
    )  # fmt: skip
    assert books["Late Book"]["reresolved"] is True
    assert not any(c["superseded"] for c in body["candidates"])
    # the dashboard's month detail carries the same list
    dash = client.get("/dashboard/months/2024-05").json
    assert dash["candidates"] == body["candidates"]


def test_month_detail_without_candidates_has_an_empty_list(
    client: FlaskClient, session: Session
) -> None:
    add_month(session, 2024, 5)
    assert client.get("/api/internal/months/2024-05", headers=AUTH).json["candidates"] == []


# -- POST months/{YYYY-MM}/regenerate


def test_regenerate_supersedes_and_reopens(client: FlaskClient, session: Session) -> None:
    row = month_with_books(session, attempts=1, retry_count=2)
    resp = client.post(REGENERATE.format("2024-05"), headers=AUTH)
    assert resp.status_code == 200, resp.json
    assert resp.json == {
        "month": "2024-05",
        "generations_superseded": 1,
        "candidates_superseded": 4,
        "status": "pending",
    }
    assert months.get(session, 2024, 5).status == "pending"
    current = session.scalars(
        select(Candidate).where(Candidate.backfill_id == row.id, Candidate.superseded_at.is_(None))
    ).all()
    assert current == []
    assert len(session.scalars(select(Candidate)).all()) == 5  # kept, never deleted
    detail = client.get("/api/internal/months/2024-05", headers=AUTH).json
    assert detail["candidates"] == [] and detail["month"]["status"] == "pending"
    # nothing left to supersede: a second call is harmless
    again = client.post(REGENERATE.format("2024-05"), json={}, headers=AUTH)
    assert again.status_code == 200
    assert (again.json["generations_superseded"], again.json["candidates_superseded"]) == (0, 0)


def test_regenerate_refuses_a_month_a_worker_holds(client: FlaskClient, session: Session) -> None:
    now = session.scalar(select(text("now()")))
    month_with_books(
        session, status="processing", job_id=uuid.uuid4(),
        lease_expires_at=now + dt.timedelta(hours=1),
    )  # fmt: skip
    session.commit()  # a savepoint: the refused request rolls back its own work only
    before, books = snapshot(session), candidate_rows(session)
    resp = client.post(REGENERATE.format("2024-05"), headers=AUTH)
    assert resp.status_code == 409
    assert resp.json["error"]["code"] == "month_not_claimable"
    assert resp.json["error"]["field"] == "month"
    assert "being processed" in resp.json["error"]["message"]
    assert snapshot(session) == before and candidate_rows(session) == books


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code", "field"),
    [
        (REGENERATE.format("2024-06"), {}, 404, "month_not_found", "month"),
        (REGENERATE.format("2024-13"), {}, 400, "validation_error", "month"),
        (REGENERATE.format("2024-05"), {"json": {"force": True}}, 400, "validation_error",
         "force"),
        (REGENERATE.format("2024-05"), {"data": "x", "content_type": "text/plain"}, 415,
         "unsupported_media_type", "Content-Type"),
    ],
)  # fmt: skip
def test_regenerate_bad_requests_change_nothing(
    client: FlaskClient,
    session: Session,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    month_with_books(session)
    session.commit()
    before, books = snapshot(session), candidate_rows(session)
    resp = client.post(path, headers=AUTH, **kwargs)
    assert (resp.status_code, resp.json["error"]["code"], resp.json["error"]["field"]) == (
        status, code, field,
    )  # fmt: skip
    assert snapshot(session) == before and candidate_rows(session) == books


# -- POST reresolve


def test_reresolve_queues_the_task_on_the_real_broker(
    client: FlaskClient, session: Session, queue: str
) -> None:
    add_month(session, 2024, 5)
    resp = client.post(RERESOLVE, json={"month": "2024-05", "older_than_days": 7}, headers=AUTH)
    assert resp.status_code == 202, resp.json
    body = resp.json
    assert body["queued"] is True and uuid.UUID(body["task_id"])
    assert (body["month"], body["older_than_days"]) == ("2024-05", 7.0)
    everything = client.post(RERESOLVE, headers=AUTH)  # an empty body: every month
    assert everything.status_code == 202
    assert (everything.json["month"], everything.json["older_than_days"]) == (None, None)
    messages = drain(queue)
    assert [(m["task"], m["id"], m["kwargs"]) for m in messages] == [
        ("backfill.reresolve", body["task_id"], {"month": "2024-05", "older_than_days": 7.0}),
        (
            "backfill.reresolve",
            everything.json["task_id"],
            {"month": None, "older_than_days": None},
        ),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"month": "2024-5"}, 400, "validation_error", "month"),
        ({"month": "2024-13"}, 400, "validation_error", "month"),
        ({"month": 202405}, 400, "validation_error", "month"),
        ({"month": None}, 400, "validation_error", "month"),
        ({"older_than_days": -1}, 400, "validation_error", "older_than_days"),
        ({"older_than_days": "7"}, 400, "validation_error", "older_than_days"),
        ({"older_than_days": True}, 400, "validation_error", "older_than_days"),
        ({"older_than_days": None}, 400, "validation_error", "older_than_days"),
        ({"older_than_days": 10**6}, 400, "validation_error", "older_than_days"),
        ({"older_than": 7}, 400, "validation_error", "older_than"),
        ({"month": "2024-06"}, 404, "month_not_found", "month"),
    ],
)
def test_reresolve_bad_input_dispatches_nothing(
    client: FlaskClient,
    session: Session,
    queue: str,
    body: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    add_month(session, 2024, 5)
    resp = client.post(RERESOLVE, json=body, headers=AUTH)
    error = resp.json["error"]
    assert (resp.status_code, error["code"], error["field"]) == (status, code, field), error
    assert error["message"]
    assert drain(queue) == []


def test_reresolve_infinity_is_refused(client: FlaskClient, queue: str) -> None:
    # Python's JSON parser reads 1e999 as infinity; it must not reach timedelta
    resp = client.post(
        RERESOLVE, data='{"older_than_days": 1e999}', content_type="application/json",
        headers=AUTH,
    )  # fmt: skip
    assert resp.status_code == 400 and resp.json["error"]["field"] == "older_than_days"
    assert drain(queue) == []


def test_reresolve_with_the_broker_down_is_a_503(session: Session) -> None:
    settings = load_settings(celery_broker_url="amqp://guest:guest@127.0.0.1:9//")
    app = create_app({"SESSION_FACTORY": lambda: session, "BACKFILL_SETTINGS": settings})
    resp = app.test_client().post(RERESOLVE, headers=AUTH)
    assert resp.status_code == 503
    assert resp.json["error"]["code"] == "broker_unavailable"
    assert "guest" not in resp.get_data(as_text=True)


# -- stats and metrics


def test_stats_count_unresolved_reresolved_and_saved_calls(
    client: FlaskClient, session: Session
) -> None:
    row = month_with_books(session)
    add_attempt(session, row, 1, "completed", 3.0, generators_reused=0)
    add_attempt(session, row, 2, "completed", 2.0, generators_reused=2)
    other = add_month(session, 2024, 4, status="failed")
    add_attempt(session, other, 1, "failed", 1.0, generators_reused=1)
    add_candidate(session, other, "Another Lost Book", "unresolved")
    progress = client.get("/api/internal/backfill-stats", headers=AUTH).json["progress"]
    assert progress["total_unresolved"] == 2  # the superseded one does not count
    assert progress["total_reresolved"] == 1
    assert progress["generator_calls_saved"] == 3
    # the existing fields are unchanged
    assert progress["total_books_generated"] == 3 and progress["total_isbns_resolved"] == 1
    detail = client.get("/api/internal/months/2024-05", headers=AUTH).json
    assert [a["generators_reused"] for a in detail["attempts"]] == [0, 2]


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.get_data(as_text=True))
        for s in family.samples
    }


def test_metrics_candidates_by_status_reresolved_and_saved_calls(
    app: Flask, session: Session
) -> None:
    empty = scrape(app)
    for status in ("pending", "resolved", "unresolved", "invalid_isbn"):
        assert empty[("backfill_candidates", (("status", status),))] == 0
    assert empty[("backfill_candidates_reresolved_total", ())] == 0
    assert empty[("backfill_generator_calls_saved_total", ())] == 0

    row = month_with_books(session)
    add_attempt(session, row, 1, "completed", 3.0, generators_reused=2)
    samples = scrape(app)
    expected = {"pending": 0, "resolved": 2, "unresolved": 1, "invalid_isbn": 1}
    for status, n in expected.items():
        assert samples[("backfill_candidates", (("status", status),))] == n
    assert samples[("backfill_candidates_reresolved_total", ())] == 1
    assert samples[("backfill_generator_calls_saved_total", ())] == 2
